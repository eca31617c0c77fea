package device

import (
	"errors"
	"fmt"
)

// ErrBadArgs is wrapped by ParseExecuteArgs errors.
var ErrBadArgs = errors.New("bad execute arguments")

// ExecArg is one argument of an Execute: a digit, optionally with a value.
type ExecArg struct {
	ID       uint8 // 0..9
	Value    string
	HasValue bool
}

// ParseExecuteArgs parses an Execute argument list as defined by LwM2M 1.1
// §5.4.5:
//
//	arglist = arg *( "," arg )
//	arg     = DIGIT [ "=" "'" *CHAR "'" ]
//	CHAR    = "!" / %x23-26 / %x28-5B / %x5D-7E
//
// so "0='http://x',1" is two arguments. The empty string is no arguments.
func ParseExecuteArgs(s string) ([]ExecArg, error) {
	if s == "" {
		return nil, nil
	}
	var args []ExecArg
	i := 0
	for {
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return nil, fmt.Errorf("%w: want a digit at offset %d of %q", ErrBadArgs, i, s)
		}
		a := ExecArg{ID: s[i] - '0'}
		i++
		if i < len(s) && s[i] == '=' {
			i++
			if i >= len(s) || s[i] != '\'' {
				return nil, fmt.Errorf("%w: value of argument %d must be quoted with ' (offset %d)", ErrBadArgs, a.ID, i)
			}
			i++
			start := i
			for i < len(s) && s[i] != '\'' {
				if !argChar(s[i]) {
					return nil, fmt.Errorf("%w: character %q not allowed in a value (offset %d)", ErrBadArgs, s[i], i)
				}
				i++
			}
			if i >= len(s) {
				return nil, fmt.Errorf("%w: value of argument %d is not closed with '", ErrBadArgs, a.ID)
			}
			a.Value, a.HasValue = s[start:i], true
			i++
		}
		args = append(args, a)
		if i == len(s) {
			return args, nil
		}
		if s[i] != ',' {
			return nil, fmt.Errorf("%w: want ',' at offset %d of %q", ErrBadArgs, i, s)
		}
		i++
	}
}

func argChar(c byte) bool {
	return c == '!' || (c >= 0x23 && c <= 0x26) || (c >= 0x28 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E)
}

// FormatExecuteArgs is the inverse of ParseExecuteArgs.
func FormatExecuteArgs(args []ExecArg) string {
	b := make([]byte, 0, 16)
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '0'+a.ID)
		if a.HasValue {
			b = append(b, '=', '\'')
			b = append(b, a.Value...)
			b = append(b, '\'')
		}
	}
	return string(b)
}
