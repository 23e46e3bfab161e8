package plan

import "strings"

// suggest returns the word of known closest to w, or "" when none is close
// enough to be a likely typo.
func suggest(w string, known []string) string {
	nw := normalize(w)
	best, bestDist, prefixed := "", -1, ""
	for _, k := range known {
		nk := normalize(k)
		if nk == nw {
			return k // WaveSize, wave-size, WAVE_SIZE
		}
		if prefixed == "" && len(nw) >= 3 && strings.HasPrefix(nk, nw) {
			prefixed = k // prod for production
		}
		dist := editDistance(nw, nk)
		if bestDist < 0 || dist < bestDist {
			best, bestDist = k, dist
		}
	}
	limit := max(1, min(3, len([]rune(nw))/3))
	if bestDist < 0 || bestDist > limit {
		return prefixed
	}
	return best
}

func normalize(s string) string {
	s = strings.ToLower(s)
	return strings.NewReplacer("_", "", "-", "", " ", "").Replace(s)
}

// editDistance is the Damerau–Levenshtein (optimal string alignment)
// distance: swapped neighbours count as one edit, the most common typo.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		// Not a typo of any key we know; avoid quadratic work on junk.
		return max(len(ra), len(rb))
	}
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
