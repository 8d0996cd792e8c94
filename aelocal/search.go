package aelocal

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"

	// The search client registers the search.v2 messages aelocal decodes.
	_ "google.golang.org/appengine/v2/search"
)

// Codes of the search service (SearchServiceError.ErrorCode), used both as
// per-document statuses and as application errors. An injected failure
// (FailNext) answers TRANSIENT_ERROR, 2.
const (
	searchOK             = 0
	searchInvalidRequest = 1
)

// DefaultSearchLimit bounds the bytes the search indexes of a server may
// hold (documents with their tokens, as searchDocCost counts them). A put
// past it fails for the documents that do not fit. Production's limit is
// 10 GB per index; a local server keeps everything in memory.
const DefaultSearchLimit = 256 << 20

// searchIndexKey names an index: its namespace and name.
type searchIndexKey struct{ namespace, name string }

// searchIndex is one index: its documents by ID.
type searchIndex struct {
	key  searchIndexKey
	docs map[string]*searchDoc
	// schema has the types each field name was stored with, as production
	// reports it (it only grows until DeleteSchema).
	schema map[string]map[int64]bool
	cost   int
}

// searchNameOverhead is what an index or a field name of its schema costs
// against the limit besides its bytes. Production keeps an index and its
// schema after their documents are deleted, and so does aelocal; they are
// charged so that many index or field names cannot grow memory past the
// limit while no document counts.
const searchNameOverhead = 64

// searchNameCost is what one index or schema field name costs.
func searchNameCost(name string) int { return len(name) + searchNameOverhead }

// newNamesCost is what storing d adds in names: the index's, if idx (under
// key) does not exist yet, and each field name its schema does not hold.
func (idx *searchIndex) newNamesCost(key searchIndexKey, d *searchDoc) int {
	cost := 0
	if idx == nil {
		cost += searchNameCost(key.namespace + key.name)
	}
	var seen map[string]bool
	for _, f := range d.fields {
		if (idx != nil && idx.schema[f.name] != nil) || seen[f.name] {
			continue
		}
		if seen == nil {
			seen = make(map[string]bool)
		}
		seen[f.name] = true
		cost += searchNameCost(f.name)
	}
	return cost
}

// searchService implements the "search" service in memory. Indexes are
// not persisted with -datastore_path.
type searchService struct {
	mu      sync.RWMutex
	indexes map[searchIndexKey]*searchIndex
	cost    int // the costs of all indexes
	limit   int // DefaultSearchLimit; tests lower it
}

// overLimit is the status detail of a document the budget has no room for.
func (x *searchService) overLimit() error {
	return fmt.Errorf("aelocal: the search indexes would pass their memory limit of %d bytes", x.limit)
}

func newSearchService() *searchService {
	return &searchService{indexes: make(map[searchIndexKey]*searchIndex), limit: DefaultSearchLimit}
}

func init() {
	register("search", "IndexDocument", "search.v2.IndexDocumentRequest", "search.v2.IndexDocumentResponse", searchIndexDocument)
	register("search", "DeleteDocument", "search.v2.DeleteDocumentRequest", "search.v2.DeleteDocumentResponse", searchDeleteDocument)
	register("search", "ListDocuments", "search.v2.ListDocumentsRequest", "search.v2.ListDocumentsResponse", searchListDocuments)
	register("search", "ListIndexes", "search.v2.ListIndexesRequest", "search.v2.ListIndexesResponse", searchListIndexes)
	register("search", "DeleteSchema", "search.v2.DeleteSchemaRequest", "search.v2.DeleteSchemaResponse", searchDeleteSchema)
	register("search", "Search", "search.v2.SearchRequest", "search.v2.SearchResponse", searchSearch)
}

// searchSpecKey reads an IndexSpec; a bad name is the call's error.
func searchSpecKey(spec pmsg) (searchIndexKey, error) {
	k := searchIndexKey{namespace: spec.Str("namespace"), name: spec.Str("name")}
	if err := searchValidName("index name", k.name, searchMaxIndexName); err != nil {
		return k, errorf(searchInvalidRequest, "%v", err)
	}
	return k, nil
}

// setStatus fills a RequestStatus.
func setStatus(st pmsg, code int64, detail string) {
	st.Set("code", code)
	if detail != "" {
		st.Set("error_detail", detail)
	}
}

// newSearchID makes the ID of a document put without one.
func newSearchID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func searchIndexDocument(s *Server, in, out pmsg) error {
	params := in.Msg("params")
	key, err := searchSpecKey(params.Msg("index_spec"))
	if err != nil {
		return err
	}
	docs := params.Msgs("document")
	if len(docs) > searchMaxDocsPerCall {
		return errorf(searchInvalidRequest, "too many documents to index: %d, the maximum is %d", len(docs), searchMaxDocsPerCall)
	}
	// Decode outside the lock: tokenizing a megabyte of text takes a
	// while. The decoded documents, tokens and all, may together take no
	// more room than the budget had when the call began (the documents
	// they replace given back), so that a request of many small words does
	// not make the server hold many times its size before the budget is
	// checked; the check under the lock below is the exact one.
	x := s.search
	pbs := make([]pmsg, len(docs))
	for i, d := range docs {
		pbs[i] = d.Clone()
		if !pbs[i].Has("id") || pbs[i].Str("id") == "" {
			pbs[i].Set("id", newSearchID())
		}
		if !pbs[i].Has("order_id") {
			pbs[i].Set("order_id", searchDefaultRank(s.Now()))
		}
	}
	x.mu.RLock()
	room := x.limit - x.cost
	if idx := x.indexes[key]; idx != nil {
		for _, pb := range pbs {
			if old := idx.docs[pb.Str("id")]; old != nil {
				room += old.cost
			}
		}
	}
	x.mu.RUnlock()
	decoded := make([]*searchDoc, len(docs))
	errs := make([]error, len(docs))
	for i, pb := range pbs {
		decoded[i], errs[i] = decodeSearchDoc(pb)
		if errs[i] != nil {
			continue
		}
		decoded[i].cost = searchDocCost(decoded[i])
		if room -= decoded[i].cost; room < 0 {
			decoded[i], errs[i] = nil, x.overLimit()
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	idx := x.indexes[key]
	for i, d := range decoded {
		st := out.AppendMsg("status")
		if errs[i] != nil {
			setStatus(st, searchInvalidRequest, errs[i].Error())
			out.Append("doc_id", "")
			continue
		}
		old := 0
		if idx != nil && idx.docs[d.id] != nil {
			old = idx.docs[d.id].cost
		}
		names := idx.newNamesCost(key, d)
		if x.cost-old+d.cost+names > x.limit {
			setStatus(st, searchInvalidRequest, x.overLimit().Error())
			out.Append("doc_id", "")
			continue
		}
		if idx == nil {
			idx = &searchIndex{key: key, docs: make(map[string]*searchDoc), schema: make(map[string]map[int64]bool)}
			x.indexes[key] = idx
		}
		idx.docs[d.id] = d
		idx.cost += d.cost - old
		x.cost += d.cost - old + names
		for _, f := range d.fields {
			if idx.schema[f.name] == nil {
				idx.schema[f.name] = make(map[int64]bool)
			}
			idx.schema[f.name][f.typ] = true
		}
		setStatus(st, searchOK, "")
		out.Append("doc_id", d.id)
	}
	return nil
}

func searchDeleteDocument(s *Server, in, out pmsg) error {
	params := in.Msg("params")
	key, err := searchSpecKey(params.Msg("index_spec"))
	if err != nil {
		return err
	}
	ids := params.BytesList("doc_id")
	if len(ids) > searchMaxDocsPerCall {
		return errorf(searchInvalidRequest, "too many documents to delete: %d, the maximum is %d", len(ids), searchMaxDocsPerCall)
	}
	x := s.search
	x.mu.Lock()
	defer x.mu.Unlock()
	idx := x.indexes[key]
	for _, id := range ids {
		// Deleting a document that is not there succeeds, as in production.
		st := out.AppendMsg("status")
		setStatus(st, searchOK, "")
		if idx == nil {
			continue
		}
		if d := idx.docs[string(id)]; d != nil {
			delete(idx.docs, string(id))
			idx.cost -= d.cost
			x.cost -= d.cost
		}
	}
	return nil
}

// sortedIDs returns the IDs of an index's documents in order.
func (idx *searchIndex) sortedIDs() []string {
	ids := make([]string, 0, len(idx.docs))
	for id := range idx.docs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func searchListDocuments(s *Server, in, out pmsg) error {
	params := in.Msg("params")
	key, err := searchSpecKey(params.Msg("index_spec"))
	if err != nil {
		return err
	}
	limit := 100
	if params.Has("limit") {
		limit = int(params.Int("limit"))
	}
	if limit < 0 || limit > searchMaxLimit {
		setStatus(out.Mutable("status"), searchInvalidRequest, fmt.Sprintf("limit must be between 0 and %d, got %d", searchMaxLimit, limit))
		return nil
	}
	setStatus(out.Mutable("status"), searchOK, "")
	x := s.search
	x.mu.RLock()
	defer x.mu.RUnlock()
	idx := x.indexes[key]
	if idx == nil {
		return nil
	}
	ids := idx.sortedIDs()
	start := params.Str("start_doc_id")
	i := sort.SearchStrings(ids, start)
	if params.Has("start_doc_id") && i < len(ids) && ids[i] == start && params.Has("include_start_doc") && !params.Bool("include_start_doc") {
		i++
	}
	keysOnly := params.Bool("keys_only")
	for n := 0; i < len(ids) && n < limit; i, n = i+1, n+1 {
		doc := out.AppendMsg("document")
		if keysOnly {
			doc.Set("id", ids[i])
			continue
		}
		doc.CopyFrom(idx.docs[ids[i]].pb)
	}
	return nil
}

func searchListIndexes(s *Server, in, out pmsg) error {
	params := in.Msg("params")
	setStatus(out.Mutable("status"), searchOK, "")
	limit := 20
	if params.Has("limit") {
		limit = int(params.Int("limit"))
	}
	ns := params.Str("namespace")
	x := s.search
	x.mu.RLock()
	defer x.mu.RUnlock()
	var names []string
	for k, idx := range x.indexes {
		if k.namespace == ns && len(idx.docs) > 0 {
			names = append(names, k.name)
		}
	}
	sort.Strings(names)
	i := 0
	if params.Has("start_index_name") {
		start := params.Str("start_index_name")
		i = sort.SearchStrings(names, start)
		if i < len(names) && names[i] == start && params.Has("include_start_index") && !params.Bool("include_start_index") {
			i++
		}
	}
	i += int(params.Int("offset"))
	prefix := params.Str("index_name_prefix")
	for n := 0; i >= 0 && i < len(names) && n < limit; i++ {
		if len(names[i]) < len(prefix) || names[i][:len(prefix)] != prefix {
			continue
		}
		n++
		idx := x.indexes[searchIndexKey{ns, names[i]}]
		md := out.AppendMsg("index_metadata")
		spec := md.Mutable("index_spec")
		spec.Set("name", names[i])
		spec.Set("namespace", ns)
		if params.Bool("fetch_schema") {
			fnames := make([]string, 0, len(idx.schema))
			for f := range idx.schema {
				fnames = append(fnames, f)
			}
			sort.Strings(fnames)
			for _, f := range fnames {
				ft := md.AppendMsg("field")
				ft.Set("name", f)
				for t := int64(sfText); t <= sfGeo; t++ {
					if idx.schema[f][t] {
						ft.Append("type", t)
					}
				}
			}
		}
		st := md.Mutable("storage")
		st.Set("amount_used", int64(idx.cost))
		st.Set("limit", int64(x.limit))
	}
	return nil
}

func searchDeleteSchema(s *Server, in, out pmsg) error {
	x := s.search
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, spec := range in.Msg("params").Msgs("index_spec") {
		key := searchIndexKey{namespace: spec.Str("namespace"), name: spec.Str("name")}
		if idx := x.indexes[key]; idx != nil {
			for name := range idx.schema {
				x.cost -= searchNameCost(name)
			}
			idx.schema = make(map[string]map[int64]bool)
		}
		setStatus(out.AppendMsg("status"), searchOK, "")
	}
	return nil
}
