package aelocal

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// How big a Get's answer may be.
//
// A client that sets allow_deferred (the Python SDK's db and ndb, Cloud
// Datastore's Lookup) gets what the SDK's stub gives it
// (datastore_stub_util.py, _Dynamic_Get): at most getDeferredMaxKeys keys
// are looked up, the others (the first ones) come back as deferred; and
// once the entities in the answer reach getDeferredMaxBytes, the rest of
// the keys are deferred too (the first entity always comes back, however
// big). The client asks again for the deferred keys.
//
// google.golang.org/appengine (v1 and v2) never sets allow_deferred and
// does not read deferred keys: its GetMulti wants one result per key. For
// it production returns everything, up to a size: a GetMulti whose answer
// was 50 MiB was measured to work on App Engine in 2019 (the goon library
// keeps that figure as the largest GetMulti answer). Past maxResponseBytes
// aelocal answers with the bridge's RESPONSE_TOO_LARGE error, the one
// App Engine's runtimes report as "The response from API call
// datastore_v3.Get() was too large", before it builds anything: such a
// call costs no memory. Where exactly production draws that line is not
// documented; 50 MiB is the most known to pass.
const (
	getDeferredMaxKeys  = 300     // the stub's _MAXIMUM_RESULTS
	getDeferredMaxBytes = 2000000 // the stub's _MAXIMUM_QUERY_RESULT_BYTES
)

// getResponse fills out, a GetResponse, with the entities found for the
// keys refs of the request in (nil where a key has no entity). A stored
// entity goes into the answer as its encoded bytes (dsEntity.answer), not
// copied or decoded: the same entity asked for many times is one string
// referenced many times, copied only when the answer is sent.
func getResponse(in pmsg, refs []pmsg, found []*dsEntity, out pmsg) error {
	deferred := in.Bool("allow_deferred")
	out.Set("in_order", !deferred)
	first := 0
	if deferred && len(refs) > getDeferredMaxKeys {
		// As the stub: the last keys are looked up, the first deferred.
		first = len(refs) - getDeferredMaxKeys
		for _, r := range refs[:first] {
			out.m.Mutable(out.fd("deferred")).List().Append(protoreflect.ValueOfMessage(r.m))
		}
	}
	if !deferred {
		if n := getResponseSize(refs, found); n > maxResponseBytes {
			return &rpcError{code: rpcResponseTooLarge, detail: fmt.Sprintf(
				"The response from API call datastore_v3.Get() was too large: %d keys would bring %d bytes; aelocal answers at most %d bytes, about the most App Engine was seen to return for one Get. Get fewer keys per call.",
				len(refs), n, maxResponseBytes)}
		}
	}
	total := 0
	for i := first; i < len(refs); i++ {
		e := found[i]
		size := 0
		if e != nil {
			size = e.size()
		}
		if deferred && i > first && total+size > getDeferredMaxBytes {
			for _, r := range refs[i:] {
				out.m.Mutable(out.fd("deferred")).List().Append(protoreflect.ValueOfMessage(r.m))
			}
			break
		}
		total += size
		g := out.AppendMsg("entity")
		if e != nil {
			g.Share("entity", e.answer())
		} else {
			g.Share("key", refs[i])
		}
	}
	return nil
}

// getResponseSize is the encoded size of a GetResponse that answers every
// key in refs, without building it.
func getResponseSize(refs []pmsg, found []*dsEntity) int {
	const group = 2 // a GetResponse.Entity's start and end group tags
	n := 0
	for i, e := range found {
		m := 0
		if e != nil {
			m = e.size()
		} else {
			m = refs[i].Size()
		}
		n += group + 1 + protowire.SizeVarint(uint64(m)) + m
	}
	return n
}
