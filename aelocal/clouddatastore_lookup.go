package aelocal

import (
	"context"
	"fmt"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/grpc/codes"
)

// lookupMaxBytes is how much entity data one Lookup answer carries before
// the rest of the keys come back deferred, as the SDK's stub defers them
// (datastore_get.go, getDeferredMaxBytes); the client asks again for
// deferred keys. The first entity always comes back.
const lookupMaxBytes = getDeferredMaxBytes

// Lookup reads entities by key: found, missing or deferred, at most
// maxGetKeys (1,000) keys, as production.
func (a *cloudAPI) Lookup(ctx context.Context, req *pb.LookupRequest) (*pb.LookupResponse, error) {
	resp := &pb.LookupResponse{}
	err := a.s.cloudCall(ctx, "Lookup", req, func() error {
		return a.s.cloudLookup(req, resp)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) cloudLookup(req *pb.LookupRequest, resp *pb.LookupResponse) error {
	sc, err := s.newCloudScope(req.GetProjectId(), req.GetDatabaseId())
	if err != nil {
		return err
	}
	if len(req.Keys) > maxGetKeys {
		return badRequest("cannot get more than %d keys in a single call (got %d)", maxGetKeys, len(req.Keys))
	}
	if req.GetPropertyMask() != nil && len(req.GetPropertyMask().GetPaths()) > 0 {
		return cloudError(codes.Unimplemented, "aelocal does not serve Lookup's property_mask")
	}
	items := make([]keyRef, len(req.Keys))
	seen := make(map[string]bool, len(req.Keys))
	for i, k := range req.Keys {
		sp, path, err := sc.key(k, fmt.Sprintf("key %d", i), false)
		if err != nil {
			return err
		}
		fk := fullKey(sp, path)
		if seen[fk] {
			// Production refuses a Lookup that names a key twice.
			return badRequest("a key cannot be looked up more than once in a single call: key %d repeats an earlier one", i)
		}
		seen[fk] = true
		items[i] = keyRef{sp, path}
	}
	r, err := s.readOptions(sc, req.GetReadOptions())
	if err != nil {
		return err
	}
	found, snap, err := s.datastore.get(items, r.inTx, r.h)
	if err != nil {
		s.endNewTx(r)
		return err
	}
	resp.Transaction = r.newTx
	resp.ReadTime = nowProto(s)
	total := 0
	for i, e := range found {
		if e == nil {
			resp.Missing = append(resp.Missing, &pb.EntityResult{
				Entity:  &pb.Entity{Key: v1Key(items[i].sp.app, items[i].sp.ns, items[i].path)},
				Version: int64(snap),
			})
			continue
		}
		if len(resp.Found) > 0 && total+e.size() > lookupMaxBytes {
			resp.Deferred = append(resp.Deferred, req.Keys[i])
			continue
		}
		total += e.size()
		resp.Found = append(resp.Found, &pb.EntityResult{Entity: v1Entity(e.msg()), Version: int64(e.ver)})
	}
	return nil
}
