package store

import "sync"

// memo keeps values the store would otherwise build again for every
// statement (statement texts derived from fixed inputs), shared by every
// connection. Past max entries a value is still built and returned but no
// longer kept, so a caller that made new keys without end could not grow
// the map without end.
type memo[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]V
	max int
}

func newMemo[K comparable, V any](max int) *memo[K, V] {
	return &memo[K, V]{m: map[K]V{}, max: max}
}

// get returns the value kept for k, if any.
func (c *memo[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

// put keeps v for k while there is room.
func (c *memo[K, V]) put(k K, v V) {
	c.mu.Lock()
	if len(c.m) < c.max {
		c.m[k] = v
	}
	c.mu.Unlock()
}
