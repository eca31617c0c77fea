package codec

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"
)

// SenML and OMA JSON times are seconds, integer or float. RFC 8428 §4.5.3:
// a time below 2**28 (including every negative one) is relative to now.
const relativeLimit = 1 << 28

// maxRelative bounds relative times (about 136 years) so that adding
// them to now cannot overflow a time.Duration.
const maxRelative = 1 << 32

// maxFloatTime bounds absolute float times (year 36812) so that they keep
// sub-millisecond precision.
const maxFloatTime = 1 << 40

// num is a SenML number: an exact integer, or a float.
type num struct {
	float bool
	i     int64
	f     float64
}

func numJSON(n json.Number) (num, bool) {
	r, ok := rawNumber(n)
	if !ok {
		return num{}, false
	}
	if r.kind == rawInt {
		return num{i: r.i}, true
	}
	return num{float: true, f: r.float()}, true
}

func numCBOR(v any) (num, bool) {
	r, ok := rawCBOR(v)
	if !ok {
		return num{}, false
	}
	switch r.kind {
	case rawInt:
		return num{i: r.i}, true
	case rawUint, rawFloat:
		return num{float: true, f: r.float()}, true
	}
	return num{}, false
}

func (a num) toFloat() float64 {
	if a.float {
		return a.f
	}
	return float64(a.i)
}

// add sums two numbers, exactly when both are integers that do not
// overflow.
func (a num) add(b num) num {
	if !a.float && !b.float {
		s := a.i + b.i
		if (s > a.i) == (b.i > 0) {
			return num{i: s}
		}
	}
	return num{float: true, f: a.toFloat() + b.toFloat()}
}

var errTimeRange = errors.New("time out of range")

// time resolves a SenML time. Float times are rounded to microseconds: a
// float64 near 2**31 seconds holds no finer digits, so rounding makes the
// time survive an encode/decode round trip.
func (a num) time() (time.Time, error) {
	if !a.float {
		if a.i < relativeLimit {
			if a.i <= -maxRelative {
				return time.Time{}, errTimeRange
			}
			return now().Add(time.Duration(a.i) * time.Second), nil
		}
		return time.Unix(a.i, 0).UTC(), nil
	}
	f := a.f
	if math.IsNaN(f) || f <= -maxRelative || f >= maxFloatTime {
		return time.Time{}, errTimeRange
	}
	if f < relativeLimit {
		return now().Add(time.Duration(f * float64(time.Second))), nil
	}
	sec := math.Floor(f)
	us := math.Round((f - sec) * 1e6)
	return time.Unix(int64(sec), int64(us)*1000).UTC(), nil
}

// timeNum is the inverse of time. Times before 1978 (2**28 seconds) would
// read as relative, so they are written relative to now.
func timeNum(t time.Time) num {
	if t.Unix() < relativeLimit {
		return num{float: true, f: t.Sub(now()).Seconds()}
	}
	if t.Nanosecond() == 0 {
		return num{i: t.Unix()}
	}
	return num{float: true, f: float64(t.Unix()) + float64(t.Nanosecond())/1e9}
}

func (a num) json() json.Number {
	if !a.float {
		return json.Number(strconv.FormatInt(a.i, 10))
	}
	return json.Number(strconv.FormatFloat(a.f, 'f', -1, 64))
}

func (a num) cbor() any {
	if !a.float {
		return a.i
	}
	return a.f
}
