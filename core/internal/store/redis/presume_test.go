package redis_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// TestPresumeMissingIntegration: a key presumed missing costs no read,
// the commit checks it, and a store whose presumptions keep failing stops
// making them until they hold again.
func TestPresumeMissingIntegration(t *testing.T) {
	url, raw := testDB(t, dbCache)
	ctx := context.Background()
	const b = store.UnorderedPrefix + "p"
	// register presumes k missing, reads it and writes k; it returns what
	// each run presumed and saw
	register := func(t *testing.T, s store.Store, k string) (presumed []bool, seen []string) {
		t.Helper()
		err := s.Update(ctx, func(tx store.Tx) error {
			presumed = append(presumed, store.PresumeMissing(tx, b, k))
			v, err := tx.Get(b, k)
			switch {
			case errors.Is(err, store.ErrNotFound):
				seen = append(seen, "<missing>")
			case err != nil:
				return err
			default:
				seen = append(seen, string(v))
			}
			return tx.Put(b, k, []byte("new"))
		})
		if err != nil {
			t.Fatal(err)
		}
		return presumed, seen
	}
	t.Run("right_presumption_commits_at_once", func(t *testing.T) {
		s := open(t, url)
		p, seen := register(t, s, "fresh")
		if fmt.Sprint(p, seen) != "[true] [<missing>]" {
			t.Fatalf("runs presumed %v and saw %q; want one run", p, seen)
		}
	})
	t.Run("wrong_presumption_runs_again_on_reads", func(t *testing.T) {
		s := open(t, url)
		if err := raw.Set(ctx, "lwm2md:"+b+":live", "old", 0).Err(); err != nil {
			t.Fatal(err)
		}
		p, seen := register(t, s, "live")
		if fmt.Sprint(p, seen) != "[true false] [<missing> old]" {
			t.Fatalf("runs presumed %v and saw %q; want a second run that read the key", p, seen)
		}
	})
	t.Run("the_cache_knows_better", func(t *testing.T) {
		s := open(t, url)
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(b, "known", []byte("mine")) }); err != nil {
			t.Fatal(err)
		}
		p, seen := register(t, s, "known")
		if fmt.Sprint(p, seen) != "[false] [mine]" {
			t.Fatalf("runs presumed %v and saw %q", p, seen)
		}
	})
	t.Run("failing_presumptions_stop_and_resume", func(t *testing.T) {
		s := open(t, url)
		// a storm of re-registrations: every key is there
		presumedLate := 0
		for i := range 40 {
			k := fmt.Sprintf("storm%02d", i)
			if err := raw.Set(ctx, "lwm2md:"+b+":"+k, "old", 0).Err(); err != nil {
				t.Fatal(err)
			}
			p, _ := register(t, s, k)
			if i >= 8 && p[0] {
				presumedLate++
			}
		}
		if presumedLate > 4 {
			t.Fatalf("%d of the last 32 Updates presumed while every presumption failed; want at most 1 in 16", presumedLate)
		}
		// new devices again: the sampled presumptions hold, and it resumes
		var last []bool
		for i := range 2000 {
			p, _ := register(t, s, fmt.Sprintf("new%04d", i))
			last = append(last, p[0])
		}
		for _, p := range last[len(last)-20:] {
			if !p {
				t.Fatalf("still not presuming after 2,000 right presumptions: %v", last[len(last)-20:])
			}
		}
	})
}
