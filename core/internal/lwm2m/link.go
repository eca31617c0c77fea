package lwm2m

// Link is one entry of a CoRE link-format document (RFC 6690), as sent in
// Register/Update payloads and Discover responses: "</3/0>;ver=1.1".
// Attributes keep their order; quoted values are unquoted.
type Link struct {
	Target string // the URI between < and >
	Attrs  []LinkAttr
}

// LinkAttr is one link parameter. HasValue is false for a bare name ("Q").
type LinkAttr struct {
	Name     string
	Value    string
	HasValue bool
}

// Attr returns the value of the first attribute called name.
func (l Link) Attr(name string) (string, bool) {
	for _, a := range l.Attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}
