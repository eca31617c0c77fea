package model

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// MaxDDFSize is the largest DDF document ParseDDF reads. The largest OMA
// registry file is under 200 KiB.
const MaxDDFSize = 4 << 20

// ErrNoObject is returned by ParseDDF for a well-formed document that holds
// no object definition: another kind of OMA file (DDF.xml, units), or the
// reusable-resources file Common.xml.
var ErrNoObject = errors.New("ddf: no object definition")

// ErrDTD is wrapped by ParseDDF when the document declares a DTD or
// entities. They are refused outright: entity expansion is the billion
// laughs and external entities read files or fetch URLs.
var ErrDTD = errors.New("ddf: DTD and entity declarations are not allowed")

// The shapes of OMA LWM2M.xsd and LWM2M-v1_1.xsd.
type ddfObject struct {
	ObjectType        string    `xml:"ObjectType,attr"`
	Name              string    `xml:"Name"`
	Description1      string    `xml:"Description1"`
	ObjectID          string    `xml:"ObjectID"`
	ObjectURN         string    `xml:"ObjectURN"`
	LWM2MVersion      string    `xml:"LWM2MVersion"`
	ObjectVersion     string    `xml:"ObjectVersion"`
	MultipleInstances string    `xml:"MultipleInstances"`
	Mandatory         string    `xml:"Mandatory"`
	Items             []ddfItem `xml:"Resources>Item"`
}

type ddfItem struct {
	ID                string `xml:"ID,attr"`
	Name              string `xml:"Name"`
	Operations        string `xml:"Operations"`
	MultipleInstances string `xml:"MultipleInstances"`
	Mandatory         string `xml:"Mandatory"`
	Type              string `xml:"Type"`
	RangeEnumeration  string `xml:"RangeEnumeration"`
	Units             string `xml:"Units"`
	Description       string `xml:"Description"`
}

type ddfRoot struct {
	Objects []ddfObject `xml:"Object"`
}

// ParseDDF reads an OMA DDF document (root <LWM2M>, one or more <Object>)
// of at most MaxDDFSize bytes. It refuses DTDs and entity declarations
// (ErrDTD), returns ErrNoObject when the document defines no object, and
// otherwise checks IDs, types, operations and instance kinds, naming the
// object and resource at fault.
func ParseDDF(r io.Reader) ([]*Object, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDDFSize+1))
	if err != nil {
		return nil, fmt.Errorf("ddf: read: %w", err)
	}
	if len(data) > MaxDDFSize {
		return nil, fmt.Errorf("ddf: document larger than %d MiB", MaxDDFSize>>20)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	raw := xml.NewDecoder(bytes.NewReader(data))
	raw.Strict = true
	raw.CharsetReader = charsetReader
	d := xml.NewTokenDecoder(noDTD{raw})
	var root ddfRoot
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil, fmt.Errorf("%w: empty document", ErrNoObject)
		}
		if errors.Is(err, ErrDTD) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("ddf: %w", err)
		}
		if cd, ok := tok.(xml.CharData); ok && len(bytes.TrimSpace(cd)) > 0 {
			return nil, fmt.Errorf("ddf: not an XML document: text before the root element")
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if start.Name.Local != "LWM2M" {
			return nil, fmt.Errorf("%w: root element is <%s>, want <LWM2M>", ErrNoObject, start.Name.Local)
		}
		if err := d.DecodeElement(&root, &start); err != nil {
			if errors.Is(err, ErrDTD) {
				return nil, err
			}
			return nil, fmt.Errorf("ddf: %w", err)
		}
		break
	}
	var objs []*Object
	for _, o := range root.Objects {
		// Common.xml's reusable resources are an <Object> too.
		if t := strings.TrimSpace(o.ObjectType); t != "" && t != "MODefinition" {
			continue
		}
		obj, err := o.object()
		if err != nil {
			return nil, err
		}
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		return nil, ErrNoObject
	}
	return objs, nil
}

// noDTD passes tokens on, failing at the first directive (<!DOCTYPE,
// <!ENTITY, ...). encoding/xml expands no entities itself, but refusing
// early gives a clear error and keeps it so if the parser ever learns.
type noDTD struct{ d *xml.Decoder }

func (n noDTD) Token() (xml.Token, error) {
	tok, err := n.d.RawToken()
	if dir, ok := tok.(xml.Directive); ok {
		s := string(dir)
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return nil, fmt.Errorf("%w (<!%s>)", ErrDTD, s)
	}
	return tok, err
}

// charsetReader accepts the two legacy encodings vendor DDFs declare
// besides UTF-8: ASCII and ISO-8859-1.
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "us-ascii", "ascii":
		return in, nil
	case "iso-8859-1", "latin1", "latin-1":
		b, err := io.ReadAll(in)
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(b))
		for _, c := range b {
			out = utf8.AppendRune(out, rune(c))
		}
		return bytes.NewReader(out), nil
	}
	return nil, fmt.Errorf("unsupported encoding %q", label)
}

func (o *ddfObject) object() (*Object, error) {
	name := strings.TrimSpace(o.Name)
	id, err := parseID(o.ObjectID)
	if err != nil {
		return nil, fmt.Errorf("ddf: object %q: ObjectID: %w", name, err)
	}
	obj := &Object{
		ID:           id,
		Name:         name,
		Description:  strings.TrimSpace(o.Description1),
		URN:          strings.TrimSpace(o.ObjectURN),
		Version:      orDefault(o.ObjectVersion, "1.0"),
		LwM2MVersion: orDefault(o.LWM2MVersion, "1.0"),
		Resources:    make(map[uint16]*Resource, len(o.Items)),
	}
	where := fmt.Sprintf("ddf: object %d (%s)", id, name)
	if obj.Multiple, err = parseMultiple(o.MultipleInstances); err != nil {
		return nil, fmt.Errorf("%s: MultipleInstances: %w", where, err)
	}
	if obj.Mandatory, err = parseMandatory(o.Mandatory); err != nil {
		return nil, fmt.Errorf("%s: Mandatory: %w", where, err)
	}
	for _, it := range o.Items {
		res, err := it.resource()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if _, dup := obj.Resources[res.ID]; dup {
			return nil, fmt.Errorf("%s: resource %d defined twice", where, res.ID)
		}
		obj.Resources[res.ID] = res
	}
	return obj, nil
}

func (it *ddfItem) resource() (*Resource, error) {
	id, err := parseID(it.ID)
	if err != nil {
		return nil, fmt.Errorf("resource %q: ID: %w", strings.TrimSpace(it.Name), err)
	}
	r := &Resource{
		ID:               id,
		Name:             strings.TrimSpace(it.Name),
		Units:            strings.TrimSpace(it.Units),
		RangeEnumeration: strings.TrimSpace(it.RangeEnumeration),
		Description:      strings.TrimSpace(it.Description),
	}
	where := fmt.Sprintf("resource %d (%s)", id, r.Name)
	if r.Type, err = lwm2m.ParseType(it.Type); err != nil {
		return nil, fmt.Errorf("%s: Type: %w", where, err)
	}
	switch ops := strings.ToUpper(strings.TrimSpace(it.Operations)); ops {
	case "R", "W", "RW", "E", "":
		r.Operations = ops
	case "NONE":
	default:
		return nil, fmt.Errorf("%s: Operations %q is not R, W, RW, E or empty", where, it.Operations)
	}
	if r.Multiple, err = parseMultiple(it.MultipleInstances); err != nil {
		return nil, fmt.Errorf("%s: MultipleInstances: %w", where, err)
	}
	if r.Mandatory, err = parseMandatory(it.Mandatory); err != nil {
		return nil, fmt.Errorf("%s: Mandatory: %w", where, err)
	}
	return r, nil
}

func parseID(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	id, err := strconv.ParseUint(s, 10, 16)
	if err != nil || id > lwm2m.MaxID {
		return 0, fmt.Errorf("%q is not an id in 0..%d", s, lwm2m.MaxID)
	}
	return uint16(id), nil
}

func parseMultiple(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "multiple":
		return true, nil
	case "single", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not Single or Multiple", s)
}

func parseMandatory(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "mandatory":
		return true, nil
	case "optional", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not Mandatory or Optional", s)
}

func orDefault(s, def string) string {
	if s = strings.TrimSpace(s); s != "" {
		return s
	}
	return def
}
