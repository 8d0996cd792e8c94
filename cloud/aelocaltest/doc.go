// Package aelocaltest holds aelocal's Cloud Datastore API to the newest
// Cloud client, cloud.google.com/go/datastore: an unchanged client with
// DATASTORE_EMULATOR_HOST (and DATASTORE_PROJECT_ID) set works against an
// in-process aelocal server and against the aelocal command
// ($AELOCAL_BIN), and sees what appengine/v2 wrote to the same server,
// and the other way round. It has no code of its own, only tests: they
// live in this module because the Cloud client needs a newer Go than the
// root module's.
package aelocaltest
