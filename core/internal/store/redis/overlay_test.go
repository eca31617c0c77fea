package redis

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// The overlay agrees with a plain map through random writes and removals,
// before and after it outgrows its slice, and keeps its keys sorted for
// Scan.
func TestOverlayMatchesMap(t *testing.T) {
	for _, n := range []int{1, smallOverlay, smallOverlay + 1, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(n)))
			o := newOverlay("b")
			want := map[string]entry{}
			for i := range 4 * n {
				k := fmt.Sprintf("k%03d", r.IntN(n))
				if r.IntN(8) == 0 { // a DeleteIf that came to nothing
					o.remove(k)
					delete(want, k)
				} else {
					e := entry{value: []byte(fmt.Sprint(i)), deleted: r.IntN(4) == 0}
					o.set(k, e)
					want[k] = e
				}
				for wk, we := range want {
					if got, ok := o.get(wk); !ok || got.deleted != we.deleted || string(got.value) != string(we.value) {
						t.Fatalf("after %d writes: get(%q) = %v %v, want %v", i+1, wk, got, ok, we)
					}
				}
				if _, ok := o.get("absent"); ok {
					t.Fatal("get of a key never written succeeded")
				}
				if keys := slices.Sorted(maps.Keys(want)); !slices.Equal(o.keys, keys) {
					t.Fatalf("after %d writes: keys %q, want %q", i+1, o.keys, keys)
				}
			}
			if big := len(want) > smallOverlay; big != (o.m != nil) {
				t.Errorf("%d keys: map made = %v", len(want), o.m != nil)
			}
		})
	}
}
