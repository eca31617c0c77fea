package registry

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Limits on client-chosen values, so a registration record stays small.
const (
	maxEndpointLen = 255
	maxSMSLen      = 64
	maxLifetime    = 1<<31 - 1 // seconds
	// DefaultLifetime applies when a Register has no "lt" (LwM2M default).
	DefaultLifetime = 86400
)

// requestError is a client mistake: answered with code and msg as the
// diagnostic payload.
type requestError struct {
	code codes.Code
	msg  string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{code: codes.BadRequest, msg: fmt.Sprintf(format, args...)}
}

// query holds the URI-query parameters of a Register or Update.
type query struct {
	ep, lt, version, binding, sms, at               string
	hasLt, hasVersion, hasBinding, hasSMS, hasAt, q bool
	hasEp                                           bool
}

// add takes one Uri-Query option, "name=value" or a bare "name".
// Unknown parameters are ignored, as LwM2M asks.
func (q *query) add(opt []byte) error {
	name, val, hasVal := cutByte(opt, '=')
	var dst *string
	var seen *bool
	switch string(name) {
	case "ep":
		dst, seen = &q.ep, &q.hasEp
	case "lt":
		dst, seen = &q.lt, &q.hasLt
	case "lwm2m":
		dst, seen = &q.version, &q.hasVersion
	case "b":
		dst, seen = &q.binding, &q.hasBinding
	case "sms":
		dst, seen = &q.sms, &q.hasSMS
	case "at":
		dst, seen = &q.at, &q.hasAt
	case "Q":
		if hasVal {
			return badRequest("query parameter Q takes no value")
		}
		q.q = true
		return nil
	default:
		return nil
	}
	if *seen {
		return badRequest("duplicate query parameter %q", name)
	}
	*seen = true
	*dst = string(val)
	return nil
}

func cutByte(b []byte, sep byte) (before, after []byte, found bool) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// checkVersion answers 4.12 for versions this server does not speak; an
// absent "lwm2m" means 1.0 (LwM2M 1.0 made it optional).
func checkVersion(q *query) (string, error) {
	if !q.hasVersion {
		return "1.0", nil
	}
	switch q.version {
	case "1.0", "1.1", "1.2":
		return q.version, nil
	}
	return "", &requestError{code: codes.PreconditionFailed, msg: fmt.Sprintf("unsupported LwM2M version %q: this server supports 1.0, 1.1 and 1.2", q.version)}
}

func parseLifetime(s string) (int64, error) {
	lt, err := strconv.ParseInt(s, 10, 64)
	if err != nil || lt <= 0 || lt > maxLifetime {
		return 0, badRequest("bad lifetime lt=%q: want seconds in 1..%d", s, maxLifetime)
	}
	return lt, nil
}

func parseAwakeTimePtr(s string) (*int64, error) {
	at, err := parseAwakeTime(s)
	if err != nil {
		return nil, err
	}
	return &at, nil
}

func parseAwakeTime(s string) (int64, error) {
	at, err := strconv.ParseInt(s, 10, 64)
	if err != nil || at < 0 || at > maxLifetime {
		return 0, badRequest("bad awake time at=%q: want seconds in 0..%d", s, maxLifetime)
	}
	return at, nil
}

// bindings10 are the binding modes of LwM2M 1.0 (Q for queue mode is part
// of the binding there).
var bindings10 = map[string]bool{"U": true, "UQ": true, "S": true, "SQ": true, "US": true, "UQS": true}

// checkBinding validates b for version and reports whether it asks for
// queue mode. From 1.1 the binding is a set of transport letters and queue
// mode is the separate "Q" parameter.
func checkBinding(version, b string) (queue bool, err error) {
	if version == "1.0" {
		if !bindings10[b] {
			return false, badRequest("binding b=%q is not valid for LwM2M 1.0: want one of U, UQ, S, SQ, US, UQS", b)
		}
		return strings.Contains(b, "Q"), nil
	}
	letters := "USNT"
	if version == "1.2" {
		letters = "UMHTSN"
	}
	if b == "" {
		return false, badRequest("empty binding b= for LwM2M %s", version)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if strings.IndexByte(letters, c) < 0 {
			if c == 'Q' {
				return false, badRequest("binding b=%q is not valid for LwM2M %s: queue mode is the separate Q parameter", b, version)
			}
			return false, badRequest("binding b=%q is not valid for LwM2M %s: letters are %s", b, version, strings.Join(strings.Split(letters, ""), ", "))
		}
		if strings.IndexByte(b[:i], c) >= 0 {
			return false, badRequest("binding b=%q repeats %q", b, c)
		}
	}
	return false, nil
}

// linkInfo is what a Register/Update payload tells beyond the raw links.
type linkInfo struct {
	links    []lwm2m.Link
	root     string   // "" when the payload has no root link
	formats  []uint16 // root link "ct"
	hasRoot  bool
	hasLinks bool
}

// parsePayload checks a link-format payload: at most one root link
// (rt="oma.lwm2m", giving the alternate root path and the content formats
// the client supports), every other link an object or object instance
// under the root, object versions ("ver") of the form major.minor.
func parsePayload(payload, oldRoot string) (linkInfo, error) {
	var info linkInfo
	links, err := codec.ParseLinkString(payload)
	if err != nil {
		return info, badRequest("bad link-format payload: %v", err)
	}
	info.links = links
	info.hasLinks = len(links) > 0
	for _, l := range links {
		if rt, ok := l.Attr("rt"); ok && hasToken(rt, "oma.lwm2m") {
			if info.hasRoot {
				return info, badRequest("more than one root link with rt=\"oma.lwm2m\"")
			}
			info.hasRoot = true
			info.root = strings.TrimSuffix(l.Target, "/")
			if info.root == "" {
				info.root = "/"
			}
			if !strings.HasPrefix(info.root, "/") {
				return info, badRequest("root link <%s>: the path must start with /", l.Target)
			}
			if ct, ok := l.Attr("ct"); ok {
				if info.formats, err = parseFormats(ct); err != nil {
					return info, err
				}
			}
		}
	}
	root := oldRoot
	if info.hasRoot {
		root = info.root
	}
	if root == "" {
		root = "/"
	}
	for _, l := range links {
		if rt, ok := l.Attr("rt"); ok && hasToken(rt, "oma.lwm2m") {
			continue
		}
		if err := checkObjectLink(l, root); err != nil {
			return info, err
		}
	}
	return info, nil
}

func checkObjectLink(l lwm2m.Link, root string) error {
	rel := l.Target
	if root != "/" {
		if !strings.HasPrefix(rel, root+"/") {
			return badRequest("link <%s> is not under the root path %s", l.Target, root)
		}
		rel = rel[len(root):]
	}
	if !strings.HasPrefix(rel, "/") {
		return badRequest("link <%s>: an object link must start with /", l.Target)
	}
	p, err := lwm2m.ParsePath(rel)
	if err != nil || p.Len() < 1 || p.Len() > 2 {
		return badRequest("link <%s> is not an object or object instance path", l.Target)
	}
	if ver, ok := l.Attr("ver"); ok && !isVersion(ver) {
		return badRequest("link <%s>: bad object version ver=%q, want major.minor", l.Target, ver)
	}
	return nil
}

// parseFormats reads the root link's ct: one number or a quoted,
// space-separated list ("60 110").
func parseFormats(ct string) ([]uint16, error) {
	fields := strings.Fields(ct)
	if len(fields) == 0 {
		return nil, badRequest("root link: empty ct")
	}
	out := make([]uint16, 0, len(fields))
	for _, f := range fields {
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil {
			return nil, badRequest("root link: bad content format %q in ct", f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

func isVersion(v string) bool {
	major, minor, ok := strings.Cut(v, ".")
	return ok && isDigits(major) && isDigits(minor)
}

func isDigits(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// hasToken reports whether the space-separated list s contains tok.
func hasToken(s, tok string) bool {
	for _, f := range strings.Fields(s) {
		if f == tok {
			return true
		}
	}
	return false
}

// registerRequest is a validated Register: everything of the registration
// that comes from the request itself.
type registerRequest struct {
	endpoint  string
	version   string
	lifetime  int64
	binding   string
	queue     bool
	sms       string
	awakeTime *int64 // "at", nil when absent
	hasAwake  bool
	links     linkInfo
	payload   string
}

// parseRegister validates a Register's query and payload. The version is
// checked first: a client that sent an unsupported one falls back on 4.12
// whatever else is wrong.
func parseRegister(q *query, payload []byte) (registerRequest, error) {
	var r registerRequest
	var err error
	if r.version, err = checkVersion(q); err != nil {
		return r, err
	}
	if !q.hasEp || q.ep == "" {
		return r, badRequest("missing endpoint name: the ep query parameter is required")
	}
	if len(q.ep) > maxEndpointLen {
		return r, badRequest("endpoint name is longer than %d bytes", maxEndpointLen)
	}
	r.endpoint = q.ep
	r.lifetime = DefaultLifetime
	if q.hasLt {
		if r.lifetime, err = parseLifetime(q.lt); err != nil {
			return r, err
		}
	}
	r.binding = "U"
	if q.hasBinding {
		r.binding = q.binding
	}
	if r.queue, err = checkBinding(r.version, r.binding); err != nil {
		return r, err
	}
	r.queue = r.queue || q.q
	if q.hasSMS {
		if len(q.sms) > maxSMSLen {
			return r, badRequest("sms number is longer than %d bytes", maxSMSLen)
		}
		r.sms = q.sms
	}
	if q.hasAt {
		if r.awakeTime, err = parseAwakeTimePtr(q.at); err != nil {
			return r, err
		}
		r.hasAwake = true
	}
	r.payload = string(payload) // one copy, which the links share
	if r.links, err = parsePayload(r.payload, ""); err != nil {
		return r, err
	}
	return r, nil
}

// updateRequest is a validated Update; zero-valued fields were absent.
type updateRequest struct {
	lifetime   int64
	binding    string
	hasBinding bool
	queue      bool
	sms        string
	hasSMS     bool
	awakeTime  int64
	hasAwake   bool
	links      *linkInfo
	payload    string
}

// parseUpdate validates an Update against the registration it updates.
func parseUpdate(q *query, payload []byte, old *Registration) (updateRequest, error) {
	var u updateRequest
	var err error
	if q.hasLt {
		if u.lifetime, err = parseLifetime(q.lt); err != nil {
			return u, err
		}
	}
	if q.hasBinding {
		if u.queue, err = checkBinding(old.Version, q.binding); err != nil {
			return u, err
		}
		u.binding, u.hasBinding = q.binding, true
	}
	u.queue = u.queue || q.q
	if q.hasSMS {
		if len(q.sms) > maxSMSLen {
			return u, badRequest("sms number is longer than %d bytes", maxSMSLen)
		}
		u.sms, u.hasSMS = q.sms, true
	}
	if q.hasAt {
		if u.awakeTime, err = parseAwakeTime(q.at); err != nil {
			return u, err
		}
		u.hasAwake = true
	}
	if len(payload) > 0 {
		s := string(payload) // one copy, which the links share
		info, err := parsePayload(s, old.RootPath)
		if err != nil {
			return u, err
		}
		u.links, u.payload = &info, s
	}
	return u, nil
}
