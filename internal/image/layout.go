package image

import (
	"cmp"
	"math/bits"
	"slices"
	"strings"

	"github.com/herokunix/herokunix/internal/artifact"
)

// Fitting a closure into the layer budget.
//
// A layer is reused (not uploaded again) only when every store path in it is
// unchanged, so paths that change at different rates should not share a
// layer. Nix gives a good signal for how often a path changes: how many other
// paths of the closure depend on it. A path many others depend on (a libc, a
// language runtime) is deep in the graph and changes rarely; a path only the
// output depends on (the app's source, its vendored modules) changes with
// the app. planClosure therefore stacks, bottom to top:
//
//  1. the most depended-on paths, one layer each, most depended-on first;
//  2. when the budget runs out, a few layers of about equal size holding
//     the remaining paths that several others depend on;
//  3. one layer of the remaining paths that only the output (or nothing)
//     depends on: the app's private dependencies;
//  4. the output itself, alone, on top.
//
// A path's place depends only on the dependency counts, NAR sizes and names
// of the other paths, never on the output's name: a rebuild of the app alone
// changes the top layer and nothing else.

// closurePlan is the store paths of each layer, bottom first; every group is
// sorted.
type closurePlan [][]string

// planClosure groups closure (which must hold out, and no path twice) into
// at most budget layers (budget >= 1).
func planClosure(closure []artifact.StorePath, out string, budget int) closurePlan {
	if budget <= 1 {
		all := make([]string, len(closure))
		for i, sp := range closure {
			all[i] = sp.Path
		}
		slices.Sort(all)
		return closurePlan{all}
	}
	pop := dependents(closure)
	var rest []artifact.StorePath
	for _, sp := range closure {
		if sp.Path != out {
			rest = append(rest, sp)
		}
	}
	slices.SortFunc(rest, func(a, b artifact.StorePath) int {
		return cmp.Or(cmp.Compare(pop[b.Path], pop[a.Path]), cmp.Compare(b.NarSize, a.NarSize), strings.Compare(a.Path, b.Path))
	})
	slots := budget - 1 // the output has the top layer
	var plan closurePlan
	if len(rest) <= slots {
		for _, sp := range rest {
			plan = append(plan, []string{sp.Path})
		}
		return append(plan, []string{out})
	}
	if slots == 1 {
		left := make([]string, len(rest))
		for i, sp := range rest {
			left[i] = sp.Path
		}
		slices.Sort(left)
		return closurePlan{left, {out}}
	}
	// The paths left after the singles: the shared ones (several paths
	// depend on them) in a few layers of about equal size, so that no one
	// layer holds most of the bytes and a change re-uploads only a part;
	// the private ones in one layer.
	chunks := max(1, min(4, slots/8))
	split := func(singles int) (shared []artifact.StorePath, private []string) {
		for _, sp := range rest[singles:] {
			if pop[sp.Path] <= 1 {
				private = append(private, sp.Path)
			} else {
				shared = append(shared, sp)
			}
		}
		return shared, private
	}
	singles := max(0, slots-chunks-1)
	shared, private := split(singles)
	// Slots a group does not need go to more singles.
	if len(shared) == 0 {
		singles = max(0, slots-1)
		shared, private = split(singles)
	} else if len(private) == 0 {
		singles = max(0, slots-chunks)
		shared, private = split(singles)
	}
	for _, sp := range rest[:singles] {
		plan = append(plan, []string{sp.Path})
	}
	for _, grp := range splitBySize(shared, chunks) {
		plan = append(plan, grp)
	}
	if len(private) > 0 {
		slices.Sort(private)
		plan = append(plan, private)
	}
	return append(plan, []string{out})
}

// splitBySize cuts paths (in rank order) into at most n groups of about
// equal NAR size, each sorted.
func splitBySize(paths []artifact.StorePath, n int) [][]string {
	if len(paths) == 0 {
		return nil
	}
	n = min(n, len(paths))
	var total int64
	for _, sp := range paths {
		total += max(sp.NarSize, 1)
	}
	var groups [][]string
	var cur []string
	var sum int64
	for i, sp := range paths {
		cur = append(cur, sp.Path)
		sum += max(sp.NarSize, 1)
		left := len(paths) - i - 1
		// Close the group at its share of the bytes, keeping a path
		// for every group still to come.
		if len(groups) < n-1 && (sum*int64(n) >= total*int64(len(groups)+1) || left == n-1-len(groups)) {
			slices.Sort(cur)
			groups = append(groups, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		slices.Sort(cur)
		groups = append(groups, cur)
	}
	return groups
}

// dependents counts, for each path of closure, the other paths of closure
// that depend on it directly or through others. References to paths outside
// the closure, and to the path itself, are ignored; so is an edge that would
// close a cycle (store references cannot form one, but the manifest is
// untrusted).
func dependents(closure []artifact.StorePath) map[string]int {
	idx := make(map[string]int, len(closure))
	for i, sp := range closure {
		idx[sp.Path] = i
	}
	n := len(closure)
	words := (n + 63) / 64
	// below[i] is the set of paths i depends on, as a bitset.
	below := make([][]uint64, n)
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]uint8, n)
	var visit func(i int)
	visit = func(i int) {
		state[i] = visiting
		set := make([]uint64, words)
		for _, r := range closure[i].References {
			j, ok := idx[r]
			if !ok || j == i || state[j] == visiting {
				continue
			}
			if state[j] == unvisited {
				visit(j)
			}
			set[j/64] |= 1 << (j % 64)
			for w, b := range below[j] {
				set[w] |= b
			}
		}
		below[i] = set
		state[i] = done
	}
	for i := range closure {
		if state[i] == unvisited {
			visit(i)
		}
	}
	counts := make([]int, n)
	for i := range below {
		for w, b := range below[i] {
			for b != 0 {
				counts[w*64+bits.TrailingZeros64(b)]++
				b &= b - 1
			}
		}
	}
	out := make(map[string]int, n)
	for i, sp := range closure {
		out[sp.Path] = counts[i]
	}
	return out
}

// mergeRuns says how to fit n layers into budget by merging adjacent ones:
// the lowest n-budget+1 layers (the most shared, least changing ones in
// every layered Nix image) become one, the others stay as they are. Each run
// is [start, end) in layer order. A merged layer depends only on the layers
// it merges, so its digest is stable while they are unchanged.
func mergeRuns(n, budget int) [][2]int {
	merged := max(1, n-budget+1)
	runs := [][2]int{{0, min(merged, n)}}
	for i := merged; i < n; i++ {
		runs = append(runs, [2]int{i, i + 1})
	}
	if n == 0 {
		return nil
	}
	return runs
}
