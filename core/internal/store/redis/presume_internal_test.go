package redis

import "testing"

func TestPresumptionGuard(t *testing.T) {
	var p presumption
	if !p.ok() {
		t.Fatal("a new store does not presume")
	}
	for range 3 { // three wrong presumptions in a row
		p.record(true)
	}
	n := 0
	for range 160 {
		if p.ok() {
			n++
		}
	}
	if n != 160/sampleEvery {
		t.Fatalf("after 3 failures %d of 160 presumed; want the 1 in %d sampled", n, sampleEvery)
	}
	for range 100 {
		p.record(false)
	}
	if !p.ok() {
		t.Fatalf("fail rate %d/1024 after 100 right presumptions: still not presuming", p.failRate.Load())
	}
}
