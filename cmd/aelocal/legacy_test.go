package main

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// TestLegacyEntityGroupsFlag: -legacy_entity_groups reaches the server
// (Options.LegacyEntityGroups; aelocal's tests cover what it does), and
// without it a non-ancestor query runs in a transaction.
func TestLegacyEntityGroupsFlag(t *testing.T) {
	query := func(ctx context.Context) error {
		return datastore.RunInTransaction(ctx, func(tc context.Context) error {
			_, err := datastore.NewQuery("Thing").Count(tc)
			return err
		}, nil)
	}
	if err := query(clientContext(t, startProc(t))); err != nil {
		t.Fatalf("default: %v", err)
	}
	err := query(clientContext(t, startProc(t, "-legacy_entity_groups")))
	if err == nil || !strings.Contains(err.Error(), "only ancestor queries are allowed inside transactions") {
		t.Fatalf("-legacy_entity_groups: %v", err)
	}
}
