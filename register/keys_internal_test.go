package register

import "testing"

// Idempotency keys: unique, 35 characters, and later keys sort after
// earlier ones (the unique index grows at its right edge).
func TestIdempotencyKeysOrderedAndUnique(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for s := 0; s < 20; s++ {
		k := newKeys()
		for i := 0; i < 50; i++ {
			key := k.next()
			if len(key) != 35 || key[:3] != "tl-" || seen[key] {
				t.Fatalf("key %q: bad form or repeated", key)
			}
			seen[key] = true
			if key[:19] < prev[:min(len(prev), 19)] {
				t.Fatalf("key %q sorts before the earlier %q", key, prev)
			}
			prev = key
		}
	}
}
