package aelocal

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	gproto "github.com/golang/protobuf/proto"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/protobuf/proto"
)

// Inspection: what a test asserts about stored state, read without a
// client. These reads make no RPC: they count in no statistic, are not
// delayed or failed by SetLatency or FailNext, and change nothing (an
// item read here is not made recently used).

// MemcacheItem returns the memcache item stored under key in namespace
// ("" for the default one), as a Get would find it now by the server's
// clock. Expiration is the time the item has left, 0 if it never expires.
// ok is false if there is no such item.
func (s *Server) MemcacheItem(namespace, key string) (item *memcache.Item, ok bool) {
	m := s.memcache
	now := s.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.items[mcKey{ns: namespace, key: key}]
	if e == nil || e.locked() || (!e.expires.IsZero() && !now.Before(e.expires)) {
		return nil, false
	}
	item = &memcache.Item{Key: key, Value: slices.Clone(e.value), Flags: e.flags}
	if !e.expires.IsZero() {
		item.Expiration = e.expires.Sub(now)
	}
	return item, true
}

// Entity is a stored datastore entity, as Server.Entities returns it.
// datastore.LoadStruct(&v, e.Properties) fills a struct from it.
type Entity struct {
	Key        *datastore.Key
	Properties datastore.PropertyList
}

// Entities returns the stored entities of kind in namespace ("" for the
// default one), of every app, in key order. Kind "" means every kind.
func (s *Server) Entities(namespace, kind string) ([]Entity, error) {
	d := s.datastore
	d.mu.Lock()
	var ents []*dsEntity
	for sp, space := range d.spaces {
		if sp.ns != namespace {
			continue
		}
		for k := range space.idx {
			if kind == "" || k == kind {
				ents = slices.AppendSeq(ents, space.kindEntities(k))
			}
		}
	}
	d.mu.Unlock()
	slices.SortFunc(ents, func(a, b *dsEntity) int {
		if c := cmp.Compare(a.space().app, b.space().app); c != 0 {
			return c
		}
		return comparePath(a.path, b.path)
	})

	out := make([]Entity, len(ents))
	keys := make([]*datastore.Key, len(ents))
	for i, e := range ents {
		b, err := e.keyMsg().Marshal()
		if err == nil {
			keys[i], err = datastore.DecodeKey(strings.TrimRight(base64.URLEncoding.EncodeToString(b), "="))
		}
		if err != nil {
			return nil, fmt.Errorf("aelocal: key of entity %s: %w", e.path, err)
		}
		out[i].Key = keys[i]
	}
	// The client's own decoding turns the stored protos into properties:
	// its Get, answered from the store without an RPC.
	ctx := appengine.WithAPICallFunc(context.Background(), s.inspectCall)
	for lo := 0; lo < len(keys); lo += maxGetKeys {
		hi := min(lo+maxGetKeys, len(keys))
		pls := make([]datastore.PropertyList, hi-lo)
		if err := datastore.GetMulti(ctx, keys[lo:hi], pls); err != nil {
			return nil, fmt.Errorf("aelocal: reading entities: %w", err)
		}
		for i, pl := range pls {
			out[lo+i].Properties = pl
		}
	}
	return out, nil
}

// inspectCall serves the datastore Gets of Entities straight from the
// store.
func (s *Server) inspectCall(_ context.Context, service, method string, in, out gproto.Message) error {
	if service != "datastore_v3" || method != "Get" {
		return fmt.Errorf("aelocal: inspection does not serve %s.%s", service, method)
	}
	// The client reads the answer's messages: decode the stored entities'
	// bytes in it (dsEntity.answer).
	answer, err := newMsg("appengine.v2.GetResponse")
	if err != nil {
		return err
	}
	if err := dsGet(s, pmsg{gproto.MessageV2(in).ProtoReflect()}, answer); err != nil {
		return err
	}
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(answer.m.Interface())
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, gproto.MessageV2(out))
}
