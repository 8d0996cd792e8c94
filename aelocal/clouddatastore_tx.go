package aelocal

import (
	"context"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Transactions of the Cloud Datastore API are the engine's transactions
// (datastore_tx.go): the same snapshot, read set and conflicts, so that a
// transaction of either API conflicts with writes of the other. A
// transaction's bytes are its handle. A Cloud transaction may always span
// entity groups (production's Cloud API has no single-group mode).

// BeginTransaction begins a read-write or read-only transaction.
func (a *cloudAPI) BeginTransaction(ctx context.Context, req *pb.BeginTransactionRequest) (*pb.BeginTransactionResponse, error) {
	resp := &pb.BeginTransactionResponse{}
	err := a.s.cloudCall(ctx, "BeginTransaction", req, func() error {
		sc, err := a.s.newCloudScope(req.GetProjectId(), req.GetDatabaseId())
		if err != nil {
			return err
		}
		h, err := a.s.beginCloudTx(sc, req.GetTransactionOptions())
		if err != nil {
			return err
		}
		resp.Transaction = cloudHandle(h)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// beginCloudTx begins a transaction as opts asks: read-write (the
// default), or read-only, at the current time or at a read_time.
func (s *Server) beginCloudTx(sc *cloudScope, opts *pb.TransactionOptions) (uint64, error) {
	readOnly := false
	switch m := opts.GetMode().(type) {
	case *pb.TransactionOptions_ReadOnly_:
		readOnly = true
		if rt := m.ReadOnly.GetReadTime(); rt != nil {
			if err := s.checkReadTime(rt); err != nil {
				return 0, err
			}
		}
	case *pb.TransactionOptions_ReadWrite_:
		if len(m.ReadWrite.GetPreviousTransaction()) > 0 {
			// A retry names the transaction that failed; it has ended
			// already, and the new one needs nothing of it.
			if _, err := parseCloudHandle(m.ReadWrite.GetPreviousTransaction()); err != nil {
				return 0, err
			}
		}
	}
	return s.datastore.beginTx(sc.app, true, readOnly), nil
}

// checkReadTime accepts a read time whose data aelocal still has: the
// datastore keeps no past versions (production keeps an hour of them for
// point-in-time reads), so a read time is served if nothing was written
// since, and refused with FAILED_PRECONDITION otherwise. A read time in
// the future is refused as production refuses it.
func (s *Server) checkReadTime(rt *timestamppb.Timestamp) error {
	if err := rt.CheckValid(); err != nil {
		return badRequest("invalid read_time: %v", err)
	}
	t := rt.AsTime()
	if t.After(s.Now()) {
		return badRequest("read_time %v is in the future", t)
	}
	d := s.datastore
	d.mu.Lock()
	last := d.writtenAt
	d.mu.Unlock()
	if t.Before(last) {
		return cloudError(codes.FailedPrecondition, "aelocal keeps no past versions of entities: read_time %v is before the latest write (%v); read at a later time or without read_time", t, last)
	}
	return nil
}

// Rollback ends a transaction without writing anything.
func (a *cloudAPI) Rollback(ctx context.Context, req *pb.RollbackRequest) (*pb.RollbackResponse, error) {
	err := a.s.cloudCall(ctx, "Rollback", req, func() error {
		if _, err := a.s.newCloudScope(req.GetProjectId(), req.GetDatabaseId()); err != nil {
			return err
		}
		h, err := parseCloudHandle(req.GetTransaction())
		if err != nil {
			return err
		}
		d := a.s.datastore
		d.mu.Lock()
		defer d.mu.Unlock()
		if _, err := d.useTxLocked(h); err != nil {
			if a.s.cloud.takeFailed(h) {
				return nil // its commit failed: it has ended already
			}
			return err
		}
		d.dropTxLocked(h)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &pb.RollbackResponse{}, nil
}

// cloudRead is what a Lookup or RunQuery reads: the live data, or a
// transaction's snapshot. newTx is the transaction the read began
// (read_options.new_transaction), to be returned to the client.
type cloudRead struct {
	inTx  bool
	h     uint64
	newTx []byte
}

// readOptions resolves a request's read_options, beginning a transaction
// if it asks for a new one.
func (s *Server) readOptions(sc *cloudScope, ro *pb.ReadOptions) (cloudRead, error) {
	switch c := ro.GetConsistencyType().(type) {
	case *pb.ReadOptions_Transaction:
		h, err := parseCloudHandle(c.Transaction)
		return cloudRead{inTx: true, h: h}, err
	case *pb.ReadOptions_NewTransaction:
		h, err := s.beginCloudTx(sc, c.NewTransaction)
		if err != nil {
			return cloudRead{}, err
		}
		return cloudRead{inTx: true, h: h, newTx: cloudHandle(h)}, nil
	case *pb.ReadOptions_ReadTime:
		return cloudRead{}, s.checkReadTime(c.ReadTime)
	}
	// STRONG and EVENTUAL both read the live data: Firestore in Datastore
	// mode is strongly consistent.
	return cloudRead{}, nil
}

// endNewTx rolls back a transaction a failed read began.
func (s *Server) endNewTx(r cloudRead) {
	if r.newTx == nil {
		return
	}
	d := s.datastore
	d.mu.Lock()
	d.dropTxLocked(r.h)
	d.mu.Unlock()
}
