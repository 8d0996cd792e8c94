package aelocal

import (
	"context"
	"fmt"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/grpc/codes"
)

// maxMutations is production's bound on the mutations of one Commit.
const maxMutations = 500

// Commit applies mutations (insert, update, upsert, delete), in a
// transaction or not, as production: an insert of an existing entity
// fails with ALREADY_EXISTS and an update of a missing one with
// NOT_FOUND, and then nothing is written; a mutation with a base_version
// that is not the entity's current version is skipped and reported with
// conflict_detected. A non-transactional commit may name each entity only
// once. Every write goes through the engine's checks (prepareLocked), so
// the limits are those of datastore_v3.
func (a *cloudAPI) Commit(ctx context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	resp := &pb.CommitResponse{}
	err := a.s.cloudCall(ctx, "Commit", req, func() error {
		return a.s.cloudCommit(req, resp)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// cloudMutation is one decoded mutation.
type cloudMutation struct {
	op      string // "insert", "update", "upsert", "delete"
	sp      nsKey
	path    dsPath
	ep      pmsg // the entity to write; unset for a delete
	hasBase bool
	base    int64
}

func (s *Server) cloudCommit(req *pb.CommitRequest, resp *pb.CommitResponse) (err error) {
	sc, err := s.newCloudScope(req.GetProjectId(), req.GetDatabaseId())
	if err != nil {
		return err
	}
	if len(req.Mutations) > maxMutations {
		return badRequest("cannot write more than %d entities in a single call (got %d mutations)", maxMutations, len(req.Mutations))
	}
	muts, err := sc.mutations(req.Mutations)
	if err != nil {
		return err
	}
	var h uint64
	inTx := false
	switch t := req.GetTransactionSelector().(type) {
	case *pb.CommitRequest_Transaction:
		if h, err = parseCloudHandle(t.Transaction); err != nil {
			return err
		}
		inTx = true
	case *pb.CommitRequest_SingleUseTransaction:
		if h, err = s.beginCloudTx(sc, t.SingleUseTransaction); err != nil {
			return err
		}
		inTx = true
	}
	// The messages are the validator's of the Python SDK's v1 stub
	// (cloud_datastore_validator.py); an unspecified mode is
	// TRANSACTIONAL, as the API documents.
	switch req.GetMode() {
	case pb.CommitRequest_TRANSACTIONAL, pb.CommitRequest_MODE_UNSPECIFIED:
		if !inTx {
			return badRequest("Transactional commit requires a transaction.")
		}
	case pb.CommitRequest_NON_TRANSACTIONAL:
		if inTx {
			return badRequest("Non-transactional commit cannot specify a transaction.")
		}
		seen := make(map[string]bool, len(muts))
		for _, m := range muts {
			if !m.path[len(m.path)-1].complete() {
				continue
			}
			fk := fullKey(m.sp, m.path)
			if seen[fk] {
				return badRequest("A non-transactional commit may not contain multiple mutations affecting the same entity.")
			}
			seen[fk] = true
		}
	}

	d := s.datastore
	d.mu.Lock()
	defer d.unlockDurable(&err)
	if inTx {
		defer func() {
			if err != nil {
				s.cloud.noteFailed(h)
			}
		}()
	}
	var tx *dsTx
	if inTx {
		if tx, err = d.useTxLocked(h); err != nil {
			return err
		}
		if tx.readOnly && len(muts) > 0 {
			d.dropTxLocked(h)
			return badRequest("cannot write in a read-only transaction")
		}
	}
	if len(muts) > 0 {
		if err := d.writableLocked(); err != nil {
			if tx != nil {
				d.dropTxLocked(h)
			}
			return err
		}
	}
	ws, results, err := d.mutateLocked(tx, muts)
	if err != nil {
		if tx != nil {
			d.dropTxLocked(h)
		}
		return err
	}
	if tx != nil {
		if err := tx.bufferAll(ws); err != nil {
			d.dropTxLocked(h)
			return err
		}
		if err := d.commitLocked(tx, h); err != nil {
			return err
		}
	} else {
		d.applyLocked(ws)
	}
	for i, m := range muts {
		r := results[i]
		if !r.ConflictDetected {
			// The entity's version after the commit; for a key without
			// one, the datastore's, above every earlier version of it.
			r.Version = int64(d.seq)
			if e := d.lookupLocked(m.sp, m.path); e != nil {
				r.Version = cloudVersion(e)
			}
		}
		resp.MutationResults = append(resp.MutationResults, r)
	}
	resp.IndexUpdates = int32(len(ws))
	resp.CommitTime = nowProto(s)
	return nil
}

// cloudVersion is the Cloud API's version of a stored entity: the
// datastore seq of its write, at least 1 (an entity loaded from a file
// has none, and version 0 means "no entity" to a base_version).
func cloudVersion(e *dsEntity) int64 { return int64(max(e.ver, 1)) }

// mutations decodes and checks the mutations of a commit.
func (c *cloudScope) mutations(in []*pb.Mutation) ([]cloudMutation, error) {
	muts := make([]cloudMutation, len(in))
	for i, m := range in {
		var cm cloudMutation
		var ent *pb.Entity
		var key *pb.Key
		switch op := m.GetOperation().(type) {
		case *pb.Mutation_Insert:
			cm.op, ent = "insert", op.Insert
		case *pb.Mutation_Update:
			cm.op, ent = "update", op.Update
		case *pb.Mutation_Upsert:
			cm.op, ent = "upsert", op.Upsert
		case *pb.Mutation_Delete:
			cm.op, key = "delete", op.Delete
		default:
			return nil, badRequest("mutation %d has no operation", i)
		}
		if len(m.GetPropertyMask().GetPaths()) > 0 {
			return nil, cloudError(codes.Unimplemented, "aelocal does not serve a mutation's property_mask")
		}
		if len(m.GetPropertyTransforms()) > 0 {
			return nil, cloudError(codes.Unimplemented, "aelocal does not serve property_transforms")
		}
		switch cds := m.GetConflictDetectionStrategy().(type) {
		case *pb.Mutation_BaseVersion:
			cm.hasBase, cm.base = true, cds.BaseVersion
		case *pb.Mutation_UpdateTime:
			return nil, cloudError(codes.Unimplemented, "aelocal does not serve update_time conflict detection: use base_version")
		}
		what := fmt.Sprintf("mutation %d: key", i)
		if ent != nil {
			if ent.Key == nil {
				return nil, badRequest("mutation %d: the entity has no key", i)
			}
			key = ent.Key
		}
		sp, path, err := c.key(key, what, cm.op == "insert" || cm.op == "upsert")
		if err != nil {
			return nil, err
		}
		if !path[len(path)-1].complete() && cm.hasBase {
			return nil, badRequest("mutation %d: a base_version needs a complete key", i)
		}
		cm.sp, cm.path = sp, path
		if ent != nil {
			ep, err := c.v3Entity(ent, sp, path)
			if err != nil {
				return nil, fmt.Errorf("mutation %d: %w", i, err)
			}
			if err := checkPut(path, ep, i); err != nil {
				return nil, err
			}
			cm.ep = ep
		}
		muts[i] = cm
	}
	return muts, nil
}

// mutateLocked turns mutations into writes, checking each against the
// entity it finds: the stored one, or an earlier mutation's of this
// commit. It writes nothing. results[i] has the key of an entity that
// got an automatic ID, and conflict_detected for a skipped mutation.
func (d *datastoreService) mutateLocked(tx *dsTx, muts []cloudMutation) ([]dsWrite, []*pb.MutationResult, error) {
	type state struct {
		exists bool
		ver    int64
	}
	pending := make(map[string]state)
	current := func(m *cloudMutation) state {
		fk := fullKey(m.sp, m.path)
		if st, ok := pending[fk]; ok {
			return st
		}
		if e := d.lookupLocked(m.sp, m.path); e != nil {
			return state{true, cloudVersion(e)}
		}
		return state{}
	}
	ws := make([]dsWrite, 0, len(muts))
	results := make([]*pb.MutationResult, len(muts))
	for i := range muts {
		m := &muts[i]
		r := &pb.MutationResult{}
		results[i] = r
		auto := !m.path[len(m.path)-1].complete()
		if !auto {
			st := current(m)
			_, again := pending[fullKey(m.sp, m.path)]
			// As the Python SDK's v1 stub: a base_version is checked on
			// the first mutation of a key in the commit only.
			if m.hasBase && !again && st.ver != m.base {
				r.ConflictDetected = true
				r.Version = st.ver
				continue
			}
			switch {
			case m.op == "insert" && st.exists:
				return nil, nil, cloudError(codes.AlreadyExists, "entity already exists: mutation %d inserts the key %s", i, m.path.String())
			case m.op == "update" && !st.exists:
				return nil, nil, cloudError(codes.NotFound, "no entity to update: mutation %d updates the key %s", i, m.path.String())
			}
		}
		if m.op == "delete" {
			if tx != nil {
				if err := d.useGroupLocked(tx, m.sp, m.path); err != nil {
					return nil, nil, err
				}
			}
			ws = append(ws, dsWrite{m.sp, m.path, nil})
			pending[fullKey(m.sp, m.path)] = state{}
			continue
		}
		e, err := d.prepareLocked(tx, m.sp, m.path, m.ep, i)
		if err != nil {
			return nil, nil, err
		}
		if auto {
			r.Key = v1Key(m.sp.app, m.sp.ns, m.path)
		}
		ws = append(ws, dsWrite{e.space(), e.path, e})
		pending[fullKey(m.sp, m.path)] = state{exists: true, ver: -1}
	}
	return ws, results, nil
}
