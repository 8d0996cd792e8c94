package aelocaltest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/datastore"
	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/api/iterator"
)

// filterClient starts an in-process aelocal with the Cloud Datastore API
// and returns an unchanged Cloud client on it, configured by the
// environment alone. The tests set environment variables, so none is
// parallel.
func filterClient(t *testing.T) *datastore.Client {
	t.Helper()
	srv := aelocal.RunTOptions(t, &aelocal.Options{CloudDatastoreAddr: "127.0.0.1:0"})
	t.Setenv("DATASTORE_EMULATOR_HOST", srv.CloudDatastoreAddr())
	t.Setenv("DATASTORE_PROJECT_ID", srv.CloudProjectID())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := datastore.NewClient(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// child is the Cloud client's integration tests' entity: I and J vary,
// T is the same for all.
type child struct {
	I, J int64
	T    int64
}

// putChildren writes children I = 0..7, J = 99-I under parent.
func putChildren(t *testing.T, c *datastore.Client, parent *datastore.Key) {
	t.Helper()
	var keys []*datastore.Key
	var cs []*child
	for i := range int64(8) {
		keys = append(keys, datastore.NameKey("SQChild", fmt.Sprintf("c%d", i), parent))
		cs = append(cs, &child{I: i, J: 99 - i, T: 1})
	}
	if _, err := c.PutMulti(context.Background(), keys, cs); err != nil {
		t.Fatal(err)
	}
}

// is returns the I of each result of q, in order, read page by page
// through cursors when page > 0.
func is(t *testing.T, c *datastore.Client, q *datastore.Query, page int) []int64 {
	t.Helper()
	var out []int64
	var cursor *datastore.Cursor
	for range 100 {
		qq := q
		if page > 0 {
			qq = q.Limit(page)
			if cursor != nil {
				qq = qq.Start(*cursor)
			}
		}
		it := c.Run(context.Background(), qq)
		n := 0
		for {
			var x child
			_, err := it.Next(&x)
			if err == iterator.Done {
				break
			}
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			out = append(out, x.I)
			n++
		}
		if page == 0 || n < page {
			return out
		}
		cur, err := it.Cursor()
		if err != nil {
			t.Fatal(err)
		}
		cursor = &cur
	}
	t.Fatal("no end")
	return nil
}

// TestQueryFilters runs the newest Cloud client's IN, NOT_IN, != and OR
// filters (FilterField, OrFilter, AndFilter) against aelocal: the cases of
// the client's own integration tests (TestIntegration_Filters and
// TestIntegration_FilterEntity), with orders, and page by page.
func TestQueryFilters(t *testing.T) {
	c := filterClient(t)
	parent := datastore.NameKey("SQParent", "filters", nil)
	putChildren(t, c, parent)
	base := datastore.NewQuery("SQChild").Ancestor(parent).FilterField("T", "=", 1)
	for _, tc := range []struct {
		name string
		q    *datastore.Query
		want []int64
	}{
		{"I != 191", base.FilterField("I", "!=", 191), []int64{0, 1, 2, 3, 4, 5, 6, 7}},
		{"I in {2, 4}", base.FilterField("I", "in", []any{2, 4}), []int64{2, 4}},
		{"I not in {1, 3, 5, 7}", base.FilterField("I", "not-in", []any{1, 3, 5, 7}), []int64{0, 2, 4, 6}},
		{"I not in, descending", base.FilterField("I", "not-in", []any{1, 3, 5, 7}).Order("-I"), []int64{6, 4, 2, 0}},
		{"I in, descending", base.FilterField("I", "in", []any{6, 1, 3}).Order("-I"), []int64{6, 3, 1}},
		{"I < 4 or I >= 6", base.FilterEntity(datastore.OrFilter{Filters: []datastore.EntityFilter{
			datastore.PropertyFilter{FieldName: "I", Operator: "<", Value: 2},
			datastore.PropertyFilter{FieldName: "I", Operator: ">=", Value: 6},
		}}), []int64{0, 1, 6, 7}},
		{"(J > 97 and I > 0) or J < 94", datastore.NewQuery("SQChild").Ancestor(parent).FilterEntity(datastore.AndFilter{Filters: []datastore.EntityFilter{
			datastore.OrFilter{Filters: []datastore.EntityFilter{
				datastore.AndFilter{Filters: []datastore.EntityFilter{
					datastore.PropertyFilter{FieldName: "J", Operator: ">", Value: 97},
					datastore.PropertyFilter{FieldName: "T", Operator: "=", Value: 1},
				}},
				datastore.PropertyFilter{FieldName: "J", Operator: "<", Value: 94},
			}},
			datastore.PropertyFilter{FieldName: "T", Operator: "=", Value: 1},
		}}), []int64{7, 6, 1, 0}},
		{"I = 3 or J = 99", base.FilterEntity(datastore.OrFilter{Filters: []datastore.EntityFilter{
			datastore.PropertyFilter{FieldName: "I", Operator: "=", Value: 3},
			datastore.PropertyFilter{FieldName: "J", Operator: "=", Value: 99},
		}}), []int64{0, 3}},
	} {
		for _, page := range []int{0, 1, 3} {
			if got := is(t, c, tc.q, page); !slices.Equal(got, tc.want) {
				t.Errorf("%s (pages of %d): got %v, want %v", tc.name, page, got, tc.want)
			}
		}
	}
	// Production's rules come back as errors.
	for _, tc := range []struct {
		name string
		q    *datastore.Query
		want string
	}{
		{"two !=", base.FilterField("I", "!=", 1).FilterField("I", "!=", 2), "at most one NOT_EQUAL"},
		{"not-in with in", base.FilterField("I", "not-in", []any{1}).FilterField("J", "in", []any{2}), "cannot be combined"},
		{"11 not-in values", base.FilterField("I", "not-in", []any{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}), "at most 10 values"},
		{"!= ordered by another property", base.FilterField("I", "!=", 1).Order("J"), "first sort order"},
	} {
		_, err := c.GetAll(context.Background(), tc.q, &[]child{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
