package aelocal

import (
	"context"
	"fmt"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Queries of the Cloud Datastore API are datastore_v3 Queries: RunQuery
// converts the v1 query into one (as the Python SDK's v1 stub does) and
// runs it on the engine (firstBatch), so both APIs get the same planner,
// the same composite-index record and require-indexes check, and the same
// cursors: a v1 cursor is the datastore_v3 CompiledCursor, encoded.
//
// A v1 RunQuery answers one batch; the client asks for the next one with
// the batch's end cursor, so no query state stays on the server.

// cloudBatch is the most results one RunQuery answers (production answers
// batches of about this size; the engine also bounds a batch by bytes).
const cloudBatch = 300

// RunQuery runs a query and answers its first batch.
func (a *cloudAPI) RunQuery(ctx context.Context, req *pb.RunQueryRequest) (*pb.RunQueryResponse, error) {
	resp := &pb.RunQueryResponse{}
	err := a.s.cloudCall(ctx, "RunQuery", req, func() error {
		return a.s.cloudRunQuery(req, resp)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// RunAggregationQuery runs an aggregation query (clouddatastore_aggregate.go).
func (a *cloudAPI) RunAggregationQuery(ctx context.Context, req *pb.RunAggregationQueryRequest) (*pb.RunAggregationQueryResponse, error) {
	resp := &pb.RunAggregationQueryResponse{}
	err := a.s.cloudCall(ctx, "RunAggregationQuery", req, func() error {
		return a.s.cloudRunAggregationQuery(req, resp)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) cloudRunQuery(req *pb.RunQueryRequest, resp *pb.RunQueryResponse) error {
	sc, err := s.newCloudScope(req.GetProjectId(), req.GetDatabaseId())
	if err != nil {
		return err
	}
	_, gql := req.GetQueryType().(*pb.RunQueryRequest_GqlQuery)
	if err := refuseUnserved(req.GetExplainOptions(), gql); err != nil {
		return err
	}
	query := req.GetQuery()
	if query == nil {
		return badRequest("the request has no query")
	}
	in, f, err := sc.partitionQuery(req.GetPartitionId(), query)
	if err != nil {
		return err
	}
	r, err := s.readOptions(sc, req.GetReadOptions())
	if err != nil {
		return err
	}
	if r.inTx {
		t := in.Mutable("transaction")
		t.Set("handle", r.h)
		t.Set("app", sc.app)
	}
	b, err := s.datastore.firstBatchOf(in, f, true, false)
	if err != nil {
		s.endNewTx(r)
		return err
	}
	resp.Transaction = r.newTx
	resp.Batch = cloudBatchOf(b, query)
	resp.Batch.ReadTime = nowProto(s)
	return nil
}

// cloudBatchOf converts a batch of the engine's results.
func cloudBatchOf(b *queryBatch, query *pb.Query) *pb.QueryResultBatch {
	q := b.q
	out := &pb.QueryResultBatch{SkippedResults: int32(b.skipped)}
	switch {
	case q.keysOnly:
		out.EntityResultType = pb.EntityResult_KEY_ONLY
	case len(q.proj) > 0:
		out.EntityResultType = pb.EntityResult_PROJECTION
	default:
		out.EntityResultType = pb.EntityResult_FULL
	}
	for _, x := range b.res {
		er := &pb.EntityResult{Cursor: cloudCursor(q, q.posAfter(x))}
		switch out.EntityResultType {
		case pb.EntityResult_KEY_ONLY:
			er.Entity = &pb.Entity{Key: v1Key(x.e.space().app, x.e.space().ns, x.e.path)}
		case pb.EntityResult_PROJECTION:
			er.Entity = cloudProjected(q, x)
		default:
			er.Entity = v1Entity(x.e.msg())
		}
		er.Version = cloudVersion(x.e)
		out.EntityResults = append(out.EntityResults, er)
	}
	out.EndCursor = cloudCursor(q, b.pos)
	if b.skipped > 0 && len(b.res) == 0 {
		out.SkippedCursor = out.EndCursor
	}
	switch {
	case b.more:
		out.MoreResults = pb.QueryResultBatch_NOT_FINISHED
	case query.GetLimit() != nil && int64(len(b.res)) >= int64(query.GetLimit().GetValue()):
		out.MoreResults = pb.QueryResultBatch_MORE_RESULTS_AFTER_LIMIT
	case len(query.GetEndCursor()) > 0:
		out.MoreResults = pb.QueryResultBatch_MORE_RESULTS_AFTER_CURSOR
	default:
		out.MoreResults = pb.QueryResultBatch_NO_MORE_RESULTS
	}
	return out
}

// cloudCursor encodes a position as the v1 API's cursor bytes: the
// datastore_v3 CompiledCursor.
func cloudCursor(q *dsQuery, p dsPos) []byte {
	cc, err := newMsg("appengine.v2.CompiledCursor")
	if err != nil {
		return nil
	}
	q.writePos(cc, p)
	b, err := proto.MarshalOptions{AllowPartial: true, Deterministic: true}.Marshal(cc.m.Interface())
	if err != nil {
		return nil
	}
	return b
}

// cloudProjected is a projection result: its projected values as the
// engine writes them for datastore_v3 (meaning INDEX_VALUE), with the
// meaning of the stored property instead, so that a time comes back as a
// timestamp, as production's Cloud API answers.
func cloudProjected(q *dsQuery, x dsCand) *pb.Entity {
	r, err := newMsg("appengine.v2.EntityProto")
	if err != nil {
		return &pb.Entity{}
	}
	q.writeProjected(r, x)
	meanings := make(map[string]int64)
	for _, p := range x.e.msg().Msgs("property") {
		if _, ok := meanings[p.Str("name")]; !ok {
			meanings[p.Str("name")] = p.Int("meaning")
		}
	}
	e := &pb.Entity{Key: v1Key(x.e.space().app, x.e.space().ns, x.e.path), Properties: make(map[string]*pb.Value)}
	for _, p := range r.Msgs("property") {
		name := p.Str("name")
		if m := meanings[name]; m != 0 {
			p.Set("meaning", m)
		} else {
			p.Clear("meaning")
		}
		v := v1Value(p, true)
		v.ExcludeFromIndexes = false
		e.Properties[name] = v
	}
	return e
}

// v3Query converts a v1 query in partition sp into a datastore_v3 Query.
func (c *cloudScope) v3Query(sp nsKey, query *pb.Query) (pmsg, error) {
	in, err := newMsg("appengine.v2.Query")
	if err != nil {
		return in, err
	}
	in.Set("app", sp.app)
	if sp.ns != "" {
		in.Set("name_space", sp.ns)
	}
	switch len(query.GetKind()) {
	case 0:
	case 1:
		in.Set("kind", query.Kind[0].GetName())
	default:
		return in, badRequest("a query may name at most one kind (got %d)", len(query.Kind))
	}
	if f := query.GetFilter(); f != nil && !cloudOnlyFilter(f) { // else cloudQuery
		if err := c.v3Filter(in, sp, f, 0); err != nil {
			return in, err
		}
	}
	for _, o := range query.GetOrder() {
		name := o.GetProperty().GetName()
		if name == "" {
			return in, badRequest("a sort order needs a property name")
		}
		v3o := in.AppendMsg("order")
		v3o.Set("property", name)
		if o.GetDirection() == pb.PropertyOrder_DESCENDING {
			v3o.Set("direction", int64(2))
		} else {
			v3o.Set("direction", int64(1))
		}
	}
	proj := query.GetProjection()
	if len(proj) == 1 && proj[0].GetProperty().GetName() == keyProp {
		in.Set("keys_only", true)
	} else {
		for _, p := range proj {
			name := p.GetProperty().GetName()
			if name == keyProp {
				return in, badRequest("__key__ can be projected only alone (a keys-only query)")
			}
			in.Append("property_name", name)
		}
	}
	for _, p := range query.GetDistinctOn() {
		in.Append("group_by_property_name", p.GetName())
	}
	if query.GetOffset() < 0 {
		return in, badRequest("negative offset %d", query.GetOffset())
	}
	in.Set("offset", int64(query.GetOffset()))
	count := int64(cloudBatch)
	if l := query.GetLimit(); l != nil {
		if l.GetValue() < 0 {
			return in, badRequest("negative limit %d", l.GetValue())
		}
		in.Set("limit", int64(l.GetValue()))
		count = min(count, int64(l.GetValue()))
	}
	in.Set("count", count)
	for _, cur := range []struct {
		field string
		b     []byte
	}{{"compiled_cursor", query.GetStartCursor()}, {"end_compiled_cursor", query.GetEndCursor()}} {
		if len(cur.b) == 0 {
			continue
		}
		cc := in.Mutable(cur.field)
		if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(cur.b, cc.m.Interface()); err != nil {
			return in, badRequest("invalid cursor: it is not a cursor this server gave")
		}
	}
	in.Set("compile", true)
	return in, nil
}

// v3Filter adds the v1 filter f to the datastore_v3 Query in. It is the
// one place that maps v1 filters onto what the engine's queries express:
// AND of property filters with =, <, <=, >, >= and HAS_ANCESTOR. depth
// counts the composite filters around f.
func (c *cloudScope) v3Filter(in pmsg, sp nsKey, f *pb.Filter, depth int) error {
	if depth > maxNesting {
		return badRequest("filters are nested more than %d levels deep", maxNesting)
	}
	switch t := f.GetFilterType().(type) {
	case *pb.Filter_CompositeFilter:
		cf := t.CompositeFilter
		switch cf.GetOp() {
		case pb.CompositeFilter_AND:
		case pb.CompositeFilter_OR:
			return cloudError(codes.Unimplemented, "aelocal does not serve OR filters yet")
		default:
			return badRequest("unknown composite filter operator %v", cf.GetOp())
		}
		if len(cf.GetFilters()) == 0 {
			return badRequest("a composite filter needs at least one filter")
		}
		for _, sub := range cf.GetFilters() {
			if err := c.v3Filter(in, sp, sub, depth+1); err != nil {
				return err
			}
		}
		return nil
	case *pb.Filter_PropertyFilter:
		return c.v3PropertyFilter(in, sp, t.PropertyFilter)
	}
	return badRequest("a filter needs a composite or a property filter")
}

// v3Ops maps v1 property filter operators onto datastore_v3's.
var v3Ops = map[pb.PropertyFilter_Operator]int64{
	pb.PropertyFilter_LESS_THAN:             opLess,
	pb.PropertyFilter_LESS_THAN_OR_EQUAL:    opLessEq,
	pb.PropertyFilter_GREATER_THAN:          opGreater,
	pb.PropertyFilter_GREATER_THAN_OR_EQUAL: opGreatEq,
	pb.PropertyFilter_EQUAL:                 opEqual,
}

func (c *cloudScope) v3PropertyFilter(in pmsg, sp nsKey, pf *pb.PropertyFilter) error {
	name := pf.GetProperty().GetName()
	if name == "" {
		return badRequest("a property filter needs a property name")
	}
	if pf.GetOp() == pb.PropertyFilter_HAS_ANCESTOR {
		if name != keyProp {
			return badRequest("HAS_ANCESTOR filters the property __key__, not %q", name)
		}
		if in.Has("ancestor") {
			return badRequest("a query may have only one ancestor filter")
		}
		k := pf.GetValue().GetKeyValue()
		if k == nil {
			return badRequest("a HAS_ANCESTOR filter needs a key value")
		}
		asp, path, err := c.key(k, "the ancestor", false)
		if err != nil {
			return err
		}
		if asp != sp {
			return badRequest("the ancestor is in namespace %q, the query in %q", asp.ns, sp.ns)
		}
		writeRef(in.Mutable("ancestor"), asp.app, asp.ns, path)
		return nil
	}
	op, ok := v3Ops[pf.GetOp()]
	if !ok {
		return cloudError(codes.Unimplemented, "aelocal does not serve the %v filter yet", pf.GetOp())
	}
	v3f := in.AppendMsg("filter")
	v3f.Set("op", op)
	if _, arr := pf.GetValue().GetValueType().(*pb.Value_ArrayValue); arr {
		return badRequest("the filter on %q: an array value is allowed only with IN and NOT_IN", name)
	}
	if err := c.v3FilterValue(v3f.AppendMsg("property"), name, pf.GetValue()); err != nil {
		return fmt.Errorf("filter on %q: %w", name, err)
	}
	return nil
}

// refuseUnserved refuses what a RunQuery or RunAggregationQuery may ask
// and aelocal does not serve: query explain and GQL.
func refuseUnserved(explain *pb.ExplainOptions, gql bool) error {
	if explain != nil {
		return cloudError(codes.Unimplemented, "aelocal does not serve query explain (explain_options)")
	}
	if gql {
		return cloudError(codes.Unimplemented, "aelocal does not serve GQL queries: build the query with the client's Query type")
	}
	return nil
}

// partitionQuery converts query, run in partition pid (the request's
// project and the default database only), as cloudQuery does.
func (c *cloudScope) partitionQuery(pid *pb.PartitionId, query *pb.Query) (pmsg, *dsFilter, error) {
	if p := pid.GetProjectId(); p != "" && p != c.project {
		return pmsg{}, nil, badRequest("the partition is in project %q, the request in %q", p, c.project)
	}
	if db := pid.GetDatabaseId(); db != cloudKeyPartDefault {
		return pmsg{}, nil, badRequest("aelocal serves only the default database, not %q", db)
	}
	return c.cloudQuery(nsKey{app: c.app, ns: pid.GetNamespaceId()}, query)
}
