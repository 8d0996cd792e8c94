package aelocal

import (
	"errors"
	"net/http"
	"net/url"
	"time"
)

// The memcache viewer: statistics, one key looked up (with a peek, which
// neither counts as a hit or miss nor refreshes the item), deleting a key,
// flushing everything. Memcache cannot list its keys, in production or
// here, so a key is looked up by name.

type memcacheStats struct {
	Hits, Misses, ByteHits, Items, Bytes uint64
	OldestItemAge                        time.Duration
}

// HitRatio is the share of lookups that hit, in percent, or -1 before any.
func (m memcacheStats) HitRatio() float64 {
	if m.Hits+m.Misses == 0 {
		return -1
	}
	return 100 * float64(m.Hits) / float64(m.Hits+m.Misses)
}

type memcacheItem struct {
	Value        string
	Hex          bool
	Size         int
	Flags        uint64
	Expires      time.Time // zero: never
	LastAccess   time.Time
	LockedUntil  time.Time // a key deleted with a lock time
	DeleteLocked bool
}

type memcachePage struct {
	Stats     memcacheStats
	NS, Key   string
	Looked    bool // a key was looked up
	Item      *memcacheItem
	Now       time.Time
	MaxKeyLen int
}

func (c *console) memcacheRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /memcache", c.serveMemcache)
	c.post(mux, "/memcache/delete", c.postMemcacheDelete)
	c.post(mux, "/memcache/flush", c.postMemcacheFlush)
}

func (c *console) memcacheStats() (memcacheStats, error) {
	out, err := c.s.consoleCall("memcache", "Stats", func(pmsg) {})
	if err != nil {
		return memcacheStats{}, err
	}
	st := out.Msg("stats")
	return memcacheStats{
		Hits: st.Uint("hits"), Misses: st.Uint("misses"), ByteHits: st.Uint("byte_hits"),
		Items: st.Uint("items"), Bytes: st.Uint("bytes"),
		OldestItemAge: time.Duration(st.Uint("oldest_item_age")) * time.Second,
	}, nil
}

func (c *console) serveMemcache(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &memcachePage{NS: q.Get("ns"), Key: q.Get("key"), Now: c.s.Now(), MaxKeyLen: memcacheMaxKeyBytes}
	page := &consolePage{Title: "Memcache", Section: "Memcache", Data: d}
	status := http.StatusOK
	var err error
	if d.Stats, err = c.memcacheStats(); err != nil {
		page.Error = err.Error()
	}
	if _, looked := q["key"]; looked {
		d.Looked = true
		if d.Item, err = c.peek(d.NS, d.Key); err != nil {
			// Nothing was looked up: the page says why, and not also
			// that there is no item.
			page.Error, status, d.Looked = err.Error(), http.StatusBadRequest, false
		}
	}
	c.render(w, r, status, "memcache", page)
}

// peek looks key up without touching it; nil means a miss.
func (c *console) peek(ns, key string) (*memcacheItem, error) {
	if key == "" {
		return nil, errors.New("give a key to look up")
	}
	out, err := c.s.consoleCall("memcache", "Get", func(in pmsg) {
		in.Append("key", []byte(key))
		if ns != "" {
			in.Set("name_space", ns)
		}
		in.Set("for_peek", true)
	})
	if err != nil {
		return nil, err
	}
	items := out.Msgs("item")
	if len(items) == 0 {
		return nil, nil
	}
	it := items[0]
	ts := it.Msg("timestamps")
	m := &memcacheItem{Flags: it.Uint("flags"), DeleteLocked: it.Bool("is_delete_locked")}
	if m.DeleteLocked {
		m.LockedUntil = time.Unix(ts.Int("delete_lock_time_sec"), 0)
		return m, nil
	}
	v := it.Bytes("value")
	m.Size = len(v)
	m.Value, m.Hex = showBytes(v)
	if e := ts.Int("expiration_time_sec"); e != 0 {
		m.Expires = time.Unix(e, 0)
	}
	if a := ts.Int("last_access_time_sec"); a != 0 {
		m.LastAccess = time.Unix(a, 0)
	}
	return m, nil
}

func (c *console) postMemcacheDelete(w http.ResponseWriter, r *http.Request) {
	ns, key := r.PostForm.Get("ns"), r.PostForm.Get("key")
	out, err := c.s.consoleCall("memcache", "Delete", func(in pmsg) {
		in.AppendMsg("item").Set("key", []byte(key))
		if ns != "" {
			in.Set("name_space", ns)
		}
	})
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err)
		return
	}
	done := "mcdeleted"
	if st := out.IntList("delete_status"); len(st) != 1 || st[0] != mcDeleted {
		done = "mcmissing"
	}
	redirect(w, r, "/memcache", url.Values{"ns": {ns}, "key": {key}}, done)
}

func (c *console) postMemcacheFlush(w http.ResponseWriter, r *http.Request) {
	if _, err := c.s.consoleCall("memcache", "FlushAll", func(pmsg) {}); err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	redirect(w, r, "/memcache", nil, "flushed")
}
