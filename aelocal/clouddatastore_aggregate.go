package aelocal

import (
	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/protobuf/types/known/structpb"
)

// RunAggregationQuery of the Cloud Datastore API: the nested query is
// converted as RunQuery converts its query (cloudQuery), and the engine
// aggregates its results (aggregate, datastore_aggregate.go), in one
// batch, as production answers.

func (s *Server) cloudRunAggregationQuery(req *pb.RunAggregationQueryRequest, resp *pb.RunAggregationQueryResponse) error {
	sc, err := s.newCloudScope(req.GetProjectId(), req.GetDatabaseId())
	if err != nil {
		return err
	}
	_, gql := req.GetQueryType().(*pb.RunAggregationQueryRequest_GqlQuery)
	if err := refuseUnserved(req.GetExplainOptions(), gql); err != nil {
		return err
	}
	aq := req.GetAggregationQuery()
	if aq == nil {
		return badRequest("the request has no aggregation query")
	}
	query := aq.GetNestedQuery()
	if query == nil {
		return badRequest("the aggregation query has no nested query")
	}
	aggs := make([]dsAgg, len(aq.GetAggregations()))
	for i, a := range aq.GetAggregations() {
		aggs[i] = dsAgg{alias: a.GetAlias(), upTo: -1}
		switch op := a.GetOperator().(type) {
		case *pb.AggregationQuery_Aggregation_Count_:
			aggs[i].op = aggCount
			if u := op.Count.GetUpTo(); u != nil {
				aggs[i].upTo = u.GetValue()
				if aggs[i].upTo < 0 {
					return badRequest("COUNT_UP_TO needs a non-negative bound; it has %d", aggs[i].upTo)
				}
			}
		case *pb.AggregationQuery_Aggregation_Sum_:
			aggs[i].op, aggs[i].prop = aggSum, op.Sum.GetProperty().GetName()
		case *pb.AggregationQuery_Aggregation_Avg_:
			aggs[i].op, aggs[i].prop = aggAvg, op.Avg.GetProperty().GetName()
		default:
			return badRequest("aggregation %d has no operator", i)
		}
	}
	if err := checkAggregations(aggs); err != nil {
		return err
	}
	in, f, err := sc.partitionQuery(req.GetPartitionId(), query)
	if err != nil {
		return err
	}
	d := s.datastore
	q, err := parseFilteredQuery(in, f)
	if err != nil {
		return err
	}
	if err := d.indexes.checkFiltered(q); err != nil {
		return err
	}
	var end *dsPos
	if in.Has("compiled_cursor") {
		if q.start, err = q.parsePos(in.Msg("compiled_cursor"), "start"); err != nil {
			return err
		}
	}
	if in.Has("end_compiled_cursor") {
		e, err := q.parsePos(in.Msg("end_compiled_cursor"), "end")
		if err != nil {
			return err
		}
		end = &e
	}
	limit := int64(-1)
	if in.Has("limit") {
		limit = in.Int("limit")
	}
	r, err := s.readOptions(sc, req.GetReadOptions())
	if err != nil {
		return err
	}
	var tx pmsg
	if r.inTx {
		tx = in.Mutable("transaction")
		tx.Set("handle", r.h)
		tx.Set("app", sc.app)
	}
	vals, err := d.aggregate(q, tx, end, in.Int("offset"), limit, aggs)
	if err != nil {
		s.endNewTx(r)
		return err
	}
	res := &pb.AggregationResult{AggregateProperties: make(map[string]*pb.Value, len(aggs))}
	for i, a := range aggs {
		v := &pb.Value{}
		switch x := vals[i]; {
		case x.null:
			v.ValueType = &pb.Value_NullValue{NullValue: structpb.NullValue_NULL_VALUE}
		case x.isInt:
			v.ValueType = &pb.Value_IntegerValue{IntegerValue: x.i}
		default:
			v.ValueType = &pb.Value_DoubleValue{DoubleValue: x.f}
		}
		res.AggregateProperties[a.alias] = v
	}
	resp.Transaction = r.newTx
	resp.Batch = &pb.AggregationResultBatch{
		AggregationResults: []*pb.AggregationResult{res},
		MoreResults:        pb.QueryResultBatch_NO_MORE_RESULTS,
		ReadTime:           nowProto(s),
	}
	return nil
}
