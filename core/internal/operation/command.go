package operation

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Verb names one LwM2M shell command.
type Verb string

// The shell commands, spelled as in Cumulocity's LWM2M device shell.
const (
	VerbRead              Verb = "read"
	VerbWrite             Verb = "write"
	VerbExecute           Verb = "execute"
	VerbCreate            Verb = "create"
	VerbDelete            Verb = "delete"
	VerbDiscover          Verb = "discover"
	VerbObserve           Verb = "observe"
	VerbCancelObservation Verb = "cancelobservation"
	VerbWriteAttributes   Verb = "writeattr"
)

// ErrSyntax is wrapped by every ParseCommand error.
var ErrSyntax = errors.New("bad shell command")

// Command is a parsed shell command.
type Command struct {
	Verb Verb
	Path lwm2m.Path
	// Arg is the rest of the line after the path: the value of write, the
	// arguments of execute, the attribute query of writeattr.
	Arg string
	// Resources holds create's JSON object: resource id -> value text.
	Resources map[uint16]string
}

// ParseCommand parses one shell line such as "read /3/0/0",
// "write /3/0/14 +02:00", "execute /3/0/4", "create /3303 {"5700":21.5}",
// "writeattr /3/0/9 pmin=10&pmax=60".
func ParseCommand(line string) (Command, error) {
	line = strings.TrimSpace(line)
	verb, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimSpace(rest)
	var c Command
	c.Verb = Verb(strings.ToLower(verb))
	pathText, arg, _ := strings.Cut(rest, " ")
	c.Arg = strings.TrimSpace(arg)
	switch c.Verb {
	case VerbRead, VerbWrite, VerbExecute, VerbCreate, VerbDelete, VerbDiscover, VerbObserve, VerbCancelObservation, VerbWriteAttributes:
	case "":
		return c, fmt.Errorf("%w: empty command", ErrSyntax)
	default:
		return c, fmt.Errorf("%w: unknown command %q (known: read, write, execute, create, delete, discover, observe, cancelobservation, writeattr)", ErrSyntax, verb)
	}
	if pathText == "" {
		return c, fmt.Errorf("%w: %s needs a path such as /3/0/0", ErrSyntax, c.Verb)
	}
	p, err := lwm2m.ParsePath(pathText)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	c.Path = p
	switch c.Verb {
	case VerbRead, VerbDiscover, VerbObserve, VerbCancelObservation:
		if p.Level() == lwm2m.LevelRoot && c.Verb != VerbDiscover {
			return c, fmt.Errorf("%w: %s needs at least an object path", ErrSyntax, c.Verb)
		}
		if c.Arg != "" {
			return c, fmt.Errorf("%w: %s takes no argument after the path", ErrSyntax, c.Verb)
		}
	case VerbWrite:
		if p.Level() < lwm2m.LevelResource {
			return c, fmt.Errorf("%w: write needs a resource path such as /3/0/14", ErrSyntax)
		}
		if arg == "" {
			return c, fmt.Errorf("%w: write needs a value: write %s <value>", ErrSyntax, p)
		}
		c.Arg = strings.TrimPrefix(arg, " ") // keep the value as typed, spaces included
	case VerbExecute:
		if p.Level() != lwm2m.LevelResource {
			return c, fmt.Errorf("%w: execute needs a resource path such as /3/0/4", ErrSyntax)
		}
	case VerbDelete:
		if p.Level() != lwm2m.LevelInstance && p.Level() != lwm2m.LevelObject {
			return c, fmt.Errorf("%w: delete needs an object instance path such as /3303/1", ErrSyntax)
		}
	case VerbCreate:
		if p.Level() != lwm2m.LevelObject && p.Level() != lwm2m.LevelInstance {
			return c, fmt.Errorf("%w: create needs an object path such as /3303 (or /3303/1 to choose the instance id)", ErrSyntax)
		}
		res, err := parseCreateJSON(c.Arg)
		if err != nil {
			return c, err
		}
		c.Resources = res
	case VerbWriteAttributes:
		if p.Level() == lwm2m.LevelRoot {
			return c, fmt.Errorf("%w: writeattr needs a path", ErrSyntax)
		}
		if c.Arg == "" {
			return c, fmt.Errorf("%w: writeattr needs attributes: writeattr %s pmin=10&pmax=60", ErrSyntax, p)
		}
	}
	return c, nil
}

// parseCreateJSON reads {"5700": 21.5, "5701": "Cel"}.
func parseCreateJSON(s string) (map[uint16]string, error) {
	if s == "" {
		return nil, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, fmt.Errorf("%w: create takes a JSON object of resource id to value: %v", ErrSyntax, err)
	}
	out := make(map[uint16]string, len(raw))
	for k, v := range raw {
		id, err := strconv.ParseUint(k, 10, 16)
		if err != nil || id > lwm2m.MaxID {
			return nil, fmt.Errorf("%w: create: %q is not a resource id", ErrSyntax, k)
		}
		var str string
		if err := json.Unmarshal(v, &str); err == nil {
			out[uint16(id)] = str
			continue
		}
		var scalar any
		if err := json.Unmarshal(v, &scalar); err != nil {
			return nil, fmt.Errorf("%w: create: resource %s: %v", ErrSyntax, k, err)
		}
		switch scalar.(type) {
		case float64, bool:
			out[uint16(id)] = strings.TrimSpace(string(v))
		default:
			return nil, fmt.Errorf("%w: create: resource %s must be a string, number or boolean", ErrSyntax, k)
		}
	}
	return out, nil
}

// String formats the command back into shell syntax.
func (c Command) String() string {
	s := string(c.Verb) + " " + c.Path.String()
	if len(c.Resources) > 0 {
		ids := make([]int, 0, len(c.Resources))
		for id := range c.Resources {
			ids = append(ids, int(id))
		}
		sort.Ints(ids)
		m := make(map[string]string, len(ids))
		for _, id := range ids {
			m[strconv.Itoa(id)] = c.Resources[uint16(id)]
		}
		b, _ := json.Marshal(m)
		return s + " " + string(b)
	}
	if c.Arg != "" {
		s += " " + c.Arg
	}
	return s
}
