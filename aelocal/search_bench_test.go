package aelocal

import (
	"fmt"
	"testing"

	"google.golang.org/appengine/v2/search"
)

// BenchmarkSearch times searches of an index of 10,000 documents (a
// ten-word text field, a number, an atom) through the real client: a word
// that 1 in 10 documents hold, with a number comparison, first page of 20.
func BenchmarkSearch(b *testing.B) {
	s := RunT(b)
	ctx := middlewareContext(b, s)
	idx, _ := search.Open("bench")
	for batch := 0; batch < 50; batch++ {
		ids := make([]string, 200)
		docs := make([]any, 200)
		for i := range ids {
			n := batch*200 + i
			ids[i] = fmt.Sprint("doc", n)
			text := ""
			for w := 0; w < 10; w++ {
				text += fmt.Sprintf("word%d ", (n+w*7)%100)
			}
			docs[i] = &searchFLS{fields: []search.Field{
				{Name: "body", Value: text}, {Name: "price", Value: float64(n % 1000)},
				{Name: "kind", Value: search.Atom(fmt.Sprint("k", n%10))},
			}}
		}
		if _, err := idx.PutMulti(ctx, ids, docs); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct{ name, query string }{
		{"word", "word5"},
		{"word_and_number", "word5 price < 500"},
		{"atom_or", "kind:k1 OR kind:k2"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				it := idx.Search(ctx, c.query, &search.SearchOptions{Limit: 20})
				if _, err := it.Next(nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
