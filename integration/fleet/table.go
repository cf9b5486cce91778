package fleet

import "sync"

// Table interns strings as small integer ids. A fleet shares one table for
// resource names and one for versions, so that a thousand agents holding
// ten thousand resources each store four-byte ids instead of a thousand
// copies of every name and version string.
//
// Id 0 is never handed out: agents use it for "not held".
type Table struct {
	mu   sync.RWMutex
	ids  map[string]uint32
	strs []string
}

// NewTable returns a table that already knows names (in order, ids 1…), so
// that the resources of a known layout get dense ids.
func NewTable(names ...string) *Table {
	t := &Table{ids: make(map[string]uint32, len(names)), strs: []string{""}}
	for _, n := range names {
		t.add(n)
	}
	return t
}

func (t *Table) add(s string) uint32 {
	if id, ok := t.ids[s]; ok {
		return id
	}
	id := uint32(len(t.strs))
	t.ids[s] = id
	t.strs = append(t.strs, s)
	return id
}

// ID returns the id of s, adding it if new.
func (t *Table) ID(s string) uint32 {
	t.mu.RLock()
	id, ok := t.ids[s]
	t.mu.RUnlock()
	if ok {
		return id
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.add(s)
}

// IDsOf fills out[i] with the id of values[i], adding new ones. Lookups
// of one response share one read lock and allocate nothing, since a full
// resync interns ten thousand strings per response and per agent.
func (t *Table) IDsOf(values [][]byte, out []uint32) {
	missing := false
	t.mu.RLock()
	for i, v := range values {
		out[i] = t.ids[string(v)]
		missing = missing || out[i] == 0
	}
	t.mu.RUnlock()
	if !missing {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, v := range values {
		if out[i] == 0 {
			out[i] = t.add(string(v))
		}
	}
}

// String returns the string of id ("" for 0 or an unknown id).
func (t *Table) String(id uint32) string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if int(id) >= len(t.strs) {
		return ""
	}
	return t.strs[id]
}
