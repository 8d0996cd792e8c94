package aelocal

import (
	"sync"
	"time"
)

// DefaultMemcacheLimit is the default memory cap of memcache, in bytes.
const DefaultMemcacheLimit = 64 << 20

// memcacheService implements the "memcache" service.
type memcacheService struct {
	now   func() time.Time
	mu    sync.Mutex
	limit int64
}

func newMemcacheService(now func() time.Time) *memcacheService {
	return &memcacheService{now: now, limit: DefaultMemcacheLimit}
}

func (m *memcacheService) flush() {}

func (m *memcacheService) setLimit(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.limit = n
}
