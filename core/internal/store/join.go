package store

import "errors"

// ScanJoin scans the index bucket like Tx.Scan and, for each index key that
// names a record (rec returns its key in bucket and true), gives fn the
// record. Records are read in batches, each named to the backend first
// (Prefetch), so that on Redis a batch is one round trip instead of one per
// record. Batches start at 16 records and double up to 256, so a caller
// that stops early (fn returns ErrStop) reads few it does not use.
// Records that are missing are skipped, as an index may name a record
// deleted since. Meant for Views: in an Update, every record read (also
// those read ahead and never given to fn) is checked by the commit.
func ScanJoin(tx Tx, index, prefix, start, bucket string, rec func(indexKey string) (string, bool),
	fn func(indexKey, key string, value []byte) error) error {
	type pair struct{ index, key string }
	batch := make([]pair, 0, 16)
	size, stopped := 16, false
	flush := func() error {
		for _, p := range batch {
			Prefetch(tx, bucket, p.key)
		}
		for _, p := range batch {
			v, err := tx.Get(bucket, p.key)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if err := fn(p.index, p.key, v); err != nil {
				stopped = errors.Is(err, ErrStop)
				return err
			}
		}
		batch = batch[:0]
		size = min(2*size, 256)
		return nil
	}
	err := tx.Scan(index, prefix, start, func(k string, _ []byte) error {
		key, ok := rec(k)
		if !ok {
			return nil
		}
		batch = append(batch, pair{k, key})
		if len(batch) < size {
			return nil
		}
		return flush()
	})
	if err != nil || stopped {
		return err // Scan took fn's ErrStop for a stop
	}
	if err := flush(); err != nil && !stopped {
		return err
	}
	return nil
}
