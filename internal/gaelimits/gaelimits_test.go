package gaelimits

import "testing"

func TestMemcacheItemFits(t *testing.T) {
	for _, c := range []struct {
		key, value int
		fits       bool
	}{
		{250, 1048253, true}, // the largest value under the longest key
		{250, 1048254, false},
		{1, 1048502, true},
		{1, 1048503, false},
		{0, 1048503, true},
	} {
		if got := MemcacheItemFits(c.key, c.value); got != c.fits {
			t.Errorf("MemcacheItemFits(%d, %d) = %v", c.key, c.value, got)
		}
	}
}
