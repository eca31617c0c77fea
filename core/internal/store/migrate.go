package store

import (
	"context"
	"errors"
	"fmt"
)

// Rename is one bucket renamed between versions of the server: To ""
// drops the bucket.
type Rename struct{ From, To string }

// moveBatch bounds the keys moved by one transaction.
const moveBatch = 256

// MoveBuckets carries out renames on st: each key of From is written to
// To and deleted from From, a batch per transaction, so a crash midway
// loses nothing and the next start finishes the move. A key that To
// already holds keeps To's value (it was written by this version). Keys
// moved to a keys-only bucket leave their values behind. It returns how
// many keys it moved or dropped.
func MoveBuckets(ctx context.Context, st Store, renames ...Rename) (int, error) {
	total := 0
	for _, r := range renames {
		if Unordered(r.From) {
			return total, fmt.Errorf("move bucket %q: %w", r.From, ErrUnordered)
		}
		for {
			n := 0
			err := st.Update(ctx, func(tx Tx) error {
				n = 0
				var keys []string
				var vals [][]byte
				err := tx.Scan(r.From, "", "", func(k string, v []byte) error {
					keys, vals = append(keys, k), append(vals, append([]byte(nil), v...))
					if len(keys) == moveBatch {
						return ErrStop
					}
					return nil
				})
				if err != nil {
					return err
				}
				for i, k := range keys {
					if KeysOnly(r.To) {
						vals[i] = nil // the key carries what the index needs
					}
					if r.To != "" {
						switch _, err := tx.Get(r.To, k); {
						case errors.Is(err, ErrNotFound):
							if err := tx.Put(r.To, k, vals[i]); err != nil {
								return err
							}
						case err != nil:
							return err
						}
					}
					if err := tx.Delete(r.From, k); err != nil {
						return err
					}
				}
				n = len(keys)
				return nil
			})
			if err != nil {
				return total, fmt.Errorf("move bucket %q to %q: %w", r.From, r.To, err)
			}
			total += n
			if n < moveBatch {
				break
			}
		}
	}
	return total, nil
}
