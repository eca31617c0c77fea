package codec

import (
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

func TestPreferred(t *testing.T) {
	const (
		text    = lwm2m.FormatText
		tlv     = lwm2m.FormatTLV
		oldTLV  = lwm2m.FormatOldTLV
		omaJSON = lwm2m.FormatOMAJSON
		oldJSON = lwm2m.FormatOldJSON
		sjson   = lwm2m.FormatSenMLJSON
		scbor   = lwm2m.FormatSenMLCBOR
	)
	cases := []struct {
		name       string
		version    string
		advertised []lwm2m.Format
		level      lwm2m.Level
		want       lwm2m.Format
	}{
		{"1.0 nothing advertised", "1.0", nil, lwm2m.LevelInstance, tlv},
		{"1.0 resource", "1.0", nil, lwm2m.LevelResource, tlv},
		{"1.0 wakaama json object", "1.0", []lwm2m.Format{omaJSON}, lwm2m.LevelObject, omaJSON},
		{"1.0 wakaama json instance", "1.0", []lwm2m.Format{omaJSON}, lwm2m.LevelInstance, omaJSON},
		{"1.0 wakaama json resource", "1.0", []lwm2m.Format{omaJSON}, lwm2m.LevelResource, tlv},
		{"1.0 old json", "1.0", []lwm2m.Format{oldJSON}, lwm2m.LevelInstance, oldJSON},
		{"1.0 old tlv only", "1.0", []lwm2m.Format{oldTLV}, lwm2m.LevelInstance, oldTLV},
		{"1.0 ignores senml", "1.0", []lwm2m.Format{scbor, sjson}, lwm2m.LevelInstance, tlv},
		{"no version", "", []lwm2m.Format{sjson}, lwm2m.LevelInstance, tlv},
		{"garbage version", "x.y", []lwm2m.Format{sjson}, lwm2m.LevelInstance, tlv},
		{"1.1 wakaama senml json", "1.1", []lwm2m.Format{sjson}, lwm2m.LevelInstance, sjson},
		{"1.1 senml json for a resource", "1.1", []lwm2m.Format{sjson}, lwm2m.LevelResource, sjson},
		{"1.1 senml json for a resource instance", "1.1", []lwm2m.Format{sjson, text}, lwm2m.LevelResourceInstance, sjson},
		{"1.1 cbor preferred", "1.1", []lwm2m.Format{sjson, scbor}, lwm2m.LevelObject, scbor},
		{"1.2 anjay", "1.2", []lwm2m.Format{scbor}, lwm2m.LevelResource, scbor},
		{"1.1 nothing advertised", "1.1", nil, lwm2m.LevelInstance, tlv},
		{"1.1 only oma json", "1.1", []lwm2m.Format{omaJSON}, lwm2m.LevelInstance, tlv},
		{"2.0", "2.0", []lwm2m.Format{sjson}, lwm2m.LevelInstance, sjson},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Preferred(tc.version, tc.advertised, tc.level); got != tc.want {
				t.Fatalf("got %v (%d), want %v (%d)", got, got, tc.want, tc.want)
			}
		})
	}
}
