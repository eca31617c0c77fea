package device

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrBadAttributes is wrapped by ParseAttributes and Validate errors.
var ErrBadAttributes = errors.New("bad attributes")

// Attribute names of Write-Attributes, in the order they are sent.
var attrNames = [...]string{"pmin", "pmax", "gt", "lt", "st", "epmin", "epmax"}

// Attributes are the notification attributes of Write-Attributes. A nil
// field is left as it is on the device; a name in Remove is sent without a
// value ("pmin"), which removes the attribute on the device.
type Attributes struct {
	PMin, PMax   *uint32 // seconds
	GT, LT, ST   *float64
	EPMin, EPMax *uint32 // seconds
	Remove       []string
}

// ParseAttributes parses the query syntax of the shell's writeattr command:
// "pmin=10&pmax=60&gt=5", a bare name ("pmin" or "pmin=") to remove one
// attribute, or "cancel" to remove all seven. A leading "?" is ignored.
func ParseAttributes(s string) (Attributes, error) {
	var a Attributes
	s = strings.TrimPrefix(strings.TrimSpace(s), "?")
	if s == "" {
		return a, fmt.Errorf("%w: empty (want e.g. pmin=10&pmax=60)", ErrBadAttributes)
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, "&") {
		name, val, hasVal := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.TrimSpace(val)
		if name == "" {
			return a, fmt.Errorf("%w: empty parameter in %q", ErrBadAttributes, s)
		}
		if seen[name] {
			return a, fmt.Errorf("%w: %s given twice", ErrBadAttributes, name)
		}
		seen[name] = true
		if name == "cancel" {
			if hasVal {
				return a, fmt.Errorf("%w: cancel takes no value", ErrBadAttributes)
			}
			a.Remove = append(a.Remove, attrNames[:]...)
			continue
		}
		if !known(name) {
			return a, fmt.Errorf("%w: unknown attribute %q (known: pmin, pmax, gt, lt, st, epmin, epmax, cancel)", ErrBadAttributes, name)
		}
		if val == "" {
			a.Remove = append(a.Remove, name)
			continue
		}
		if err := a.set(name, val); err != nil {
			return a, err
		}
	}
	if err := a.Validate(); err != nil {
		return a, err
	}
	return a, nil
}

func known(name string) bool {
	for _, n := range attrNames {
		if n == name {
			return true
		}
	}
	return false
}

func (a *Attributes) set(name, val string) error {
	switch name {
	case "pmin", "pmax", "epmin", "epmax":
		u, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			return fmt.Errorf("%w: %s=%q is not a number of seconds", ErrBadAttributes, name, val)
		}
		v := uint32(u)
		switch name {
		case "pmin":
			a.PMin = &v
		case "pmax":
			a.PMax = &v
		case "epmin":
			a.EPMin = &v
		default:
			a.EPMax = &v
		}
	default:
		f, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: %s=%q is not a number", ErrBadAttributes, name, val)
		}
		switch name {
		case "gt":
			a.GT = &f
		case "lt":
			a.LT = &f
		default:
			a.ST = &f
		}
	}
	return nil
}

// Validate checks the rules of LwM2M 1.1 §5.1.2: pmin <= pmax,
// epmin <= epmax, st >= 0, lt < gt and lt + 2*st < gt; an attribute is not
// both set and removed.
func (a Attributes) Validate() error {
	if a.PMin != nil && a.PMax != nil && *a.PMin > *a.PMax {
		return fmt.Errorf("%w: pmin %d is greater than pmax %d", ErrBadAttributes, *a.PMin, *a.PMax)
	}
	if a.EPMin != nil && a.EPMax != nil && *a.EPMin > *a.EPMax {
		return fmt.Errorf("%w: epmin %d is greater than epmax %d", ErrBadAttributes, *a.EPMin, *a.EPMax)
	}
	for _, f := range []*float64{a.GT, a.LT, a.ST} {
		if f != nil && (math.IsNaN(*f) || math.IsInf(*f, 0)) {
			return fmt.Errorf("%w: thresholds must be finite numbers", ErrBadAttributes)
		}
	}
	if a.ST != nil && *a.ST < 0 {
		return fmt.Errorf("%w: st must not be negative", ErrBadAttributes)
	}
	if a.LT != nil && a.GT != nil {
		st := 0.0
		if a.ST != nil {
			st = *a.ST
		}
		if !(*a.LT+2*st < *a.GT) {
			return fmt.Errorf("%w: need lt + 2*st < gt (lt=%v, st=%v, gt=%v)", ErrBadAttributes, *a.LT, st, *a.GT)
		}
	}
	for _, name := range a.Remove {
		if !known(name) {
			return fmt.Errorf("%w: cannot remove unknown attribute %q", ErrBadAttributes, name)
		}
		if _, set := a.value(name); set {
			return fmt.Errorf("%w: %s is both set and removed", ErrBadAttributes, name)
		}
	}
	return nil
}

// value returns the query text of a set attribute.
func (a Attributes) value(name string) (string, bool) {
	u := func(p *uint32) (string, bool) {
		if p == nil {
			return "", false
		}
		return strconv.FormatUint(uint64(*p), 10), true
	}
	f := func(p *float64) (string, bool) {
		if p == nil {
			return "", false
		}
		return strconv.FormatFloat(*p, 'g', -1, 64), true
	}
	switch name {
	case "pmin":
		return u(a.PMin)
	case "pmax":
		return u(a.PMax)
	case "gt":
		return f(a.GT)
	case "lt":
		return f(a.LT)
	case "st":
		return f(a.ST)
	case "epmin":
		return u(a.EPMin)
	case "epmax":
		return u(a.EPMax)
	}
	return "", false
}

// Query returns the Uri-Query options to send: "pmin=10", ..., then the
// removed names bare, in a fixed order.
func (a Attributes) Query() []string {
	var q []string
	for _, n := range attrNames {
		if v, ok := a.value(n); ok {
			q = append(q, n+"="+v)
		}
	}
	for _, n := range attrNames {
		for _, r := range a.Remove {
			if r == n {
				q = append(q, n)
				break
			}
		}
	}
	return q
}

// String is the query joined with "&", as ParseAttributes reads it.
func (a Attributes) String() string { return strings.Join(a.Query(), "&") }
