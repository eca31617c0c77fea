package transport

import (
	"net/netip"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
)

func TestDedupCacheExpiresInOrder(t *testing.T) {
	c := newDedupCache(10 * time.Second)
	peer := netip.MustParseAddrPort("10.0.0.1:5683")
	t0 := time.Unix(1000, 0)
	resp := encode(t, message.Message{Type: message.Acknowledgement, Code: codes.Created, MessageID: 1, Token: []byte("tk")})
	for i := range 100 {
		c.store(dedupKey{peer: peer, mid: uint16(i)}, resp, t0.Add(time.Duration(i)*time.Second))
	}
	tests := []struct {
		name string
		at   time.Duration
		want int
	}{
		{name: "nothing expired yet", at: 9 * time.Second, want: 100},
		{name: "first entry at its lifetime", at: 10 * time.Second, want: 99},
		{name: "half", at: 59 * time.Second, want: 50},
		{name: "all", at: 200 * time.Second, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.expire(t0.Add(tc.at))
			if got := c.len(); got != tc.want {
				t.Errorf("len = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestDedupCacheReplacedEntrySurvivesOldSlot(t *testing.T) {
	c := newDedupCache(10 * time.Second)
	key := dedupKey{peer: netip.MustParseAddrPort("[2001:db8::1]:1000"), mid: 7}
	t0 := time.Unix(1000, 0)
	old := encode(t, message.Message{Type: message.Acknowledgement, Code: codes.Created, MessageID: 7, Token: []byte("a")})
	newer := encode(t, message.Message{Type: message.Acknowledgement, Code: codes.Deleted, MessageID: 7, Token: []byte("b")})
	c.store(key, old, t0)
	c.store(key, newer, t0.Add(5*time.Second))
	c.expire(t0.Add(11 * time.Second)) // the first slot's lifetime is over
	tests := []struct {
		name  string
		token string
		hit   bool
	}{
		{name: "current token hits", token: "b", hit: true},
		{name: "old token misses", token: "a", hit: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := pool.New(0, 0)
			msg := p.AcquireMessage(t.Context())
			msg.SetToken([]byte(tc.token))
			hit, err := c.load(key, msg)
			if err != nil {
				t.Fatal(err)
			}
			if hit != tc.hit {
				t.Fatalf("hit = %v, want %v", hit, tc.hit)
			}
			if hit && msg.Code() != codes.Deleted {
				t.Errorf("code = %v", msg.Code())
			}
		})
	}
	c.expire(t0.Add(16 * time.Second))
	if c.len() != 0 {
		t.Errorf("len = %d after both lifetimes", c.len())
	}
}

func TestTokenMatches(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		tok  string
		want bool
	}{
		{name: "equal", data: []byte{0x62, 0x41, 0, 1, 'a', 'b'}, tok: "ab", want: true},
		{name: "different", data: []byte{0x62, 0x41, 0, 1, 'a', 'b'}, tok: "ac", want: false},
		{name: "empty ack matches any", data: []byte{0x60, 0, 0, 1}, tok: "zz", want: true},
		{name: "truncated", data: []byte{0x68, 0x41, 0, 1, 'a'}, tok: "a", want: false},
		{name: "too short", data: []byte{0x60}, tok: "", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tokenMatches(tc.data, []byte(tc.tok)); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
