package aelocal

import (
	"context"
	"fmt"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
)

// IDs of the Cloud Datastore API come from the engine's counters
// (datastore_ids.go), so no ID is handed out twice across the two APIs:
// AllocateIds gives scattered IDs, as production's Cloud API does and as
// the Python SDK's v1 stub does (it allocates as a datastore_v3 Put with
// an incomplete key would); ReserveIds moves the counters past the IDs it
// names, as an explicit ID in a write does.

// AllocateIds completes incomplete keys with IDs no other key will get.
func (a *cloudAPI) AllocateIds(ctx context.Context, req *pb.AllocateIdsRequest) (*pb.AllocateIdsResponse, error) {
	resp := &pb.AllocateIdsResponse{}
	err := a.s.cloudCall(ctx, "AllocateIds", req, func() error {
		return a.s.cloudAllocate(req.GetProjectId(), req.GetDatabaseId(), req.Keys, resp)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) cloudAllocate(project, database string, keys []*pb.Key, resp *pb.AllocateIdsResponse) (err error) {
	sc, err := s.newCloudScope(project, database)
	if err != nil {
		return err
	}
	if len(keys) > maxPutEntities {
		return badRequest("cannot allocate more than %d keys in a single call (got %d)", maxPutEntities, len(keys))
	}
	type item struct {
		sp   nsKey
		path dsPath
	}
	items := make([]item, len(keys))
	for i, k := range keys {
		sp, path, err := sc.key(k, fmt.Sprintf("key %d", i), true)
		if err != nil {
			return err
		}
		if path[len(path)-1].complete() {
			return badRequest("key %d is complete: AllocateIds takes incomplete keys", i)
		}
		if reserved(path[len(path)-1].kind) {
			return badRequest("illegal kind %q in key %d: kinds of the form __*__ are reserved", path[len(path)-1].kind, i)
		}
		items[i] = item{sp, path}
	}
	d := s.datastore
	d.mu.Lock()
	defer d.unlockDurable(&err)
	if err := d.writableLocked(); err != nil {
		return err
	}
	for _, it := range items {
		for _, el := range it.path[:len(it.path)-1] {
			d.noteIDLocked(it.sp.app, el.id)
		}
		it.path[len(it.path)-1].id = d.allocScatteredLocked(it.sp.app)
		resp.Keys = append(resp.Keys, v1Key(it.sp.app, it.sp.ns, it.path))
	}
	return nil
}

// ReserveIds keeps the IDs of complete keys from being allocated.
func (a *cloudAPI) ReserveIds(ctx context.Context, req *pb.ReserveIdsRequest) (*pb.ReserveIdsResponse, error) {
	err := a.s.cloudCall(ctx, "ReserveIds", req, func() (err error) {
		sc, err := a.s.newCloudScope(req.GetProjectId(), req.GetDatabaseId())
		if err != nil {
			return err
		}
		if len(req.Keys) > maxPutEntities {
			return badRequest("cannot reserve more than %d keys in a single call (got %d)", maxPutEntities, len(req.Keys))
		}
		var refs []keyRef
		for i, k := range req.Keys {
			sp, path, err := sc.key(k, fmt.Sprintf("key %d", i), false)
			if err != nil {
				return err
			}
			refs = append(refs, keyRef{sp, path})
		}
		d := a.s.datastore
		d.mu.Lock()
		defer d.unlockDurable(&err)
		if err := d.writableLocked(); err != nil {
			return err
		}
		for _, r := range refs {
			for _, el := range r.path {
				d.noteIDLocked(r.sp.app, el.id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &pb.ReserveIdsResponse{}, nil
}
