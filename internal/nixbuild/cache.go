package nixbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"github.com/herokunix/herokunix/internal/artifact"
)

// A build cache is a directory that holds a Nix store's /nix (store/ and
// var/) across builds of one resource: a persistent volume mounted at
// /nix in the build container. Its files, written by builds that ran the
// flake's code as root with the sandbox off, are not trusted:
// PrepareCache, run before each build by code that is not the flake's,
// keeps only what can be checked.

// Files at the top of a cache directory (beside store/ and var/).
const (
	cacheLockFile   = "herokunix.lock"
	cacheSeededFile = "herokunix-seeded"
)

// CacheRootsDir is where a build that uses a cache mounted at nixDir
// records its GC roots: the derivations and outputs it built, which
// PrepareCache's size bound keeps (with their build-time closure).
func CacheRootsDir(nixDir string) string {
	return filepath.Join(nixDir, "var", "nix", "gcroots", "herokunix")
}

// LockCache waits for and takes the cache directory's lock, held until
// unlock: one build pod at a time prepares or builds in a cache. The
// claim is ReadWriteOnce, so the pods that share it share a node and its
// kernel's locks; the lock is released when its holder exits, however.
func LockCache(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, cacheLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the cache lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the cache: %w", err)
	}
	return func() { _ = f.Close() }, nil
}

// CacheReport says what PrepareCache did.
type CacheReport struct {
	// Seeded is true when the cache was (re)filled from the image.
	Seeded bool
	// Reason says why it was seeded: "first use", or what failed.
	Reason string
	// Collected is true when the size bound ran the garbage collector.
	Collected bool
	// Kept and Deleted count the store paths checked and kept, and those
	// deleted as untrusted or modified (with whatever refers to them);
	// Hashed counts those whose content was hashed (the others were as
	// the record left them).
	Kept, Deleted, Hashed int
}

func (r CacheReport) String() string {
	if r.Seeded {
		return "build cache seeded from the image (" + r.Reason + ")"
	}
	return fmt.Sprintf("build cache checked: %d paths kept, %d deleted (untrusted or modified, or referring to one), %d hashed, collected: %v",
		r.Kept, r.Deleted, r.Hashed, r.Collected)
}

// CacheOptions say where a cache and the image's own store are.
type CacheOptions struct {
	// Dir is the cache directory; it must be named "nix", as Nix opens it
	// as the store under its parent (--store <parent>).
	Dir string
	// ImageDir is the Nix image's own /nix, which seeds the cache and
	// whose paths are put back in it before every build: the image's Nix
	// and tools always come from the image.
	ImageDir string
	// Budget is the size the store is bounded to, in bytes: above 80% of
	// it, the garbage collector keeps only the last successful build's
	// build-time closure. Zero means no bound.
	Budget int64
	// Record, when set, is a file outside the build container's reach
	// (beside the cache directory on the volume, which the build
	// container mounts only the cache directory of) where the state of
	// every checked path is kept: the ctime, inode and size of each of its
	// files, and its registration. A path found in that state again is
	// not hashed again: its files cannot have been written since, as
	// writing a file sets its ctime to the current time, which a
	// container cannot set back.
	Record string
}

// PrepareCache makes the cache at opts.Dir safe to build in, holding its
// lock meanwhile. On first use (or when it cannot vouch for what is there)
// it copies the image's /nix into it. Otherwise it
//
//  1. collects garbage if the store is over 80% of opts.Budget,
//  2. puts back the image's own store paths, their registrations, its
//     profiles and GC roots (a build could have replaced Nix itself),
//  3. checks every other path with `nix store verify --sigs-needed 1`:
//     its content must match its NAR hash, and that hash must be signed
//     by a trusted key (n's and the image's nix.conf's), or the path be
//     content-addressed; a derivation must be the file its path names.
//     Paths found as opts.Record left them after their last check are
//     not hashed again, nor are paths with neither a signature nor a
//     content address (what builds made here): they fail unhashed.
//     Paths that fail, and every path that refers to one, are deleted.
//
// So what earlier builds left can reach a later one only as content a
// trusted key signed or a content hash names: a path an earlier build
// made (or altered) is built again.
func PrepareCache(ctx context.Context, n Nix, opts CacheOptions) (CacheReport, error) {
	if filepath.Base(opts.Dir) != "nix" || filepath.Base(opts.ImageDir) != "nix" {
		return CacheReport{}, fmt.Errorf("cache %s and image store %s must both be directories named nix", opts.Dir, opts.ImageDir)
	}
	// The cache directory is on the volume, where a build could have put
	// a symlink in its place.
	if fi, err := os.Lstat(opts.Dir); err == nil && !fi.IsDir() {
		if err := os.Remove(opts.Dir); err != nil {
			return CacheReport{}, fmt.Errorf("removing %s, which is not a directory: %w", opts.Dir, err)
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return CacheReport{}, err
	}
	unlock, err := LockCache(opts.Dir)
	if err != nil {
		return CacheReport{}, err
	}
	defer unlock()
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()

	if reason := unseededReason(opts.Dir); reason != "" {
		return CacheReport{Seeded: true, Reason: reason}, seedCache(opts)
	}
	rep, err := checkCache(ctx, n, opts)
	if err != nil {
		if ctx.Err() != nil {
			return rep, err
		}
		// Fail safe: a cache that cannot be checked is started afresh
		// (a cold build), never used as it is.
		return CacheReport{Seeded: true, Reason: err.Error()}, seedCache(opts)
	}
	return rep, nil
}

// unseededReason is why dir must be seeded, or "" when it holds a seeded
// store (real directories, not symlinks a build could have planted).
func unseededReason(dir string) string {
	if _, err := os.Lstat(filepath.Join(dir, cacheSeededFile)); err != nil {
		return "first use"
	}
	for _, sub := range []string{"store", "var", "var/nix", "var/nix/db"} {
		if fi, err := os.Lstat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return sub + " is not a directory"
		}
	}
	return ""
}

// seedCache empties the cache directory (its lock aside) and copies the
// image's /nix into it.
func seedCache(opts CacheOptions) error {
	if opts.Record != "" {
		if err := os.Remove(opts.Record); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("seeding the cache: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(opts.Dir, cacheSeededFile)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("seeding the cache: %w", err)
	}
	entries, err := os.ReadDir(opts.Dir)
	if err != nil {
		return fmt.Errorf("seeding the cache: %w", err)
	}
	for _, e := range entries {
		// lost+found is the file system's (an ext4 volume's root has one).
		if e.Name() == cacheLockFile || e.Name() == "lost+found" {
			continue
		}
		if err := RemoveAllWritable(filepath.Join(opts.Dir, e.Name())); err != nil {
			return fmt.Errorf("emptying the cache: %w", err)
		}
	}
	for _, sub := range []string{"store", "var"} {
		if err := copyTree(filepath.Join(opts.ImageDir, sub), filepath.Join(opts.Dir, sub), true); err != nil {
			return fmt.Errorf("seeding the cache from the image's /nix/%s: %w", sub, err)
		}
	}
	return os.WriteFile(filepath.Join(opts.Dir, cacheSeededFile), nil, 0o644)
}

// storeFlag is the --store value that opens the store whose /nix is dir.
func storeFlag(dir string) string {
	if parent := filepath.Dir(dir); parent != "/" {
		return parent
	}
	return "local"
}

// checkCache runs steps 1–3 of PrepareCache on a seeded cache.
func checkCache(ctx context.Context, n Nix, opts CacheOptions) (CacheReport, error) {
	var rep CacheReport
	cache, image := n, n
	cache.Store, image.Store = storeFlag(opts.Dir), storeFlag(opts.ImageDir)
	// Checking a store needs no binary cache.
	cache.Offline, image.Offline = true, true

	all, err := cache.allPaths(ctx)
	if err != nil {
		return rep, err
	}
	if opts.Budget > 0 {
		var size int64
		for _, p := range all {
			size += p.NarSize
		}
		if size > opts.Budget/5*4 {
			// The last build's roots name its derivations: with
			// keep-outputs, their build-time closure stays.
			if _, err := cache.nix(ctx, "nix store gc", "store", "gc",
				"--option", "keep-outputs", "true", "--option", "keep-derivations", "true"); err != nil {
				return rep, err
			}
			rep.Collected = true
			if all, err = cache.allPaths(ctx); err != nil {
				return rep, err
			}
		}
	}

	// The image's paths are put back as the image has them, unless the
	// record shows them as they were put back last time.
	rec := readRecord(opts.Record, n.TrustedPublicKeys)
	var imagePaths []string
	if rec != nil && rec.ImageListed {
		imagePaths = slices.Sorted(maps.Keys(rec.Image))
	} else {
		listed, err := image.allPaths(ctx)
		if err != nil {
			return rep, fmt.Errorf("listing the image's store: %w", err)
		}
		for _, p := range listed {
			imagePaths = append(imagePaths, p.Path)
		}
	}
	byPath := pathsByName(all)
	isImage := map[string]bool{}
	restored := false
	for _, p := range imagePaths {
		isImage[p] = true
		if info, ok := byPath[p]; ok && rec != nil && rec.Image[p] != "" {
			if st, err := pathState(opts.Dir, info); err == nil && st == rec.Image[p] {
				continue
			}
		}
		base := filepath.Base(p)
		dst := filepath.Join(opts.Dir, "store", base)
		if err := RemoveAllWritable(dst); err != nil {
			return rep, err
		}
		if err := copyTree(filepath.Join(opts.ImageDir, "store", base), dst, true); err != nil {
			return rep, fmt.Errorf("putting back the image's %s: %w", p, err)
		}
		restored = true
	}
	if restored {
		if err := n.copyRegistrations(ctx, image.Store, cache.Store); err != nil {
			return rep, err
		}
		if all, err = cache.allPaths(ctx); err != nil {
			return rep, err
		}
		byPath = pathsByName(all)
	}
	imageState := map[string]string{}
	for _, p := range imagePaths {
		info, ok := byPath[p]
		if !ok {
			return rep, fmt.Errorf("the image's %s is not valid in the cache once put back", p)
		}
		st, err := pathState(opts.Dir, info)
		if err != nil {
			return rep, err
		}
		imageState[p] = st
	}
	// Roots and profiles are the image's again (a build's roots could keep
	// an untrusted path alive); temporary roots and the hard-link
	// directory (whose files new paths are linked to) are dropped. The
	// last build's roots are written again once the paths they name have
	// been checked.
	lastRoots := readRoots(CacheRootsDir(opts.Dir))
	for _, sub := range []string{"var/nix/profiles", "var/nix/gcroots", "var/nix/temproots", "store/.links"} {
		if err := RemoveAllWritable(filepath.Join(opts.Dir, sub)); err != nil {
			return rep, err
		}
		src := filepath.Join(opts.ImageDir, sub)
		if _, err := os.Lstat(src); err == nil && !strings.HasPrefix(sub, "store/") && sub != "var/nix/temproots" {
			if err := copyTree(src, filepath.Join(opts.Dir, sub), true); err != nil {
				return rep, fmt.Errorf("putting back the image's /nix/%s: %w", sub, err)
			}
		}
	}

	// Every path but the image's is checked: hashed and its trust looked
	// at, unless the record shows it as it was when last checked. A
	// derivation (.drv) is checked here, against its path (the nix
	// command would take a .drv argument for its outputs).
	var record map[string]string
	if rec != nil {
		record = rec.Paths
	}
	state := map[string]string{}
	var check, bad []string
	checked := map[string]bool{}
	for _, p := range all {
		if isImage[p.Path] {
			continue
		}
		checked[p.Path] = true
		st, err := pathState(opts.Dir, p)
		if err != nil {
			return rep, err
		}
		state[p.Path] = st
		switch {
		case record[p.Path] == st:
		case strings.HasSuffix(p.Path, ".drv"):
			if !derivationIsIntact(opts.Dir, p) {
				bad = append(bad, p.Path)
			}
		case !p.Vouched:
			// What earlier builds made here: hashing it could not save it.
			bad = append(bad, p.Path)
		default:
			check = append(check, p.Path)
		}
	}
	rep.Hashed = len(check)
	failed, err := cache.untrusted(ctx, check)
	if err != nil {
		return rep, err
	}
	bad = append(bad, failed...)
	if len(bad) > 0 {
		// The references of the paths that stay were checked with them
		// (signed, or part of a derivation's path) or are as recorded.
		doomed := referrersClosure(all, bad)
		for _, p := range doomed {
			if !checked[p] {
				return rep, fmt.Errorf("%s refers to an untrusted path", p)
			}
			delete(checked, p)
		}
		// nix-store takes paths as they are, .drv files too. Without
		// keep-derivations, a derivation whose outputs stay is not kept
		// alive by them.
		if _, err := cache.nixStore(ctx, "nix-store --delete", append([]string{"--delete",
			"--option", "keep-derivations", "false", "--option", "keep-outputs", "false"}, doomed...)...); err != nil {
			return rep, err
		}
		rep.Deleted = len(doomed)
	}
	rep.Kept = len(checked)
	if opts.Record != "" {
		kept := map[string]string{}
		for p := range checked {
			kept[p] = state[p]
		}
		if err := writeRecord(opts.Record, cacheRecord{Keys: n.TrustedPublicKeys, Paths: kept, Image: imageState, ImageListed: true}); err != nil {
			return rep, err
		}
	}
	var roots []string
	for _, p := range lastRoots {
		if checked[p] {
			roots = append(roots, p)
		}
	}
	if err := writeRoots(CacheRootsDir(opts.Dir), roots); err != nil {
		return rep, fmt.Errorf("writing the last build's GC roots again: %w", err)
	}
	return rep, nil
}

// readRoots lists the store paths the GC roots in dir name.
func readRoots(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var paths []string
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && artifact.IsStorePath(target) {
			paths = append(paths, target)
		}
	}
	return paths
}

// allPaths lists every valid path of o's store with its size and
// registration.
func (o Nix) allPaths(ctx context.Context) ([]pathInfo, error) {
	out, err := o.nix(ctx, "nix path-info --all", "path-info", "--all", "--json")
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(out)) == 0 || string(bytes.TrimSpace(out)) == "[]" {
		return nil, nil
	}
	sps, err := ParsePathInfo(out)
	if err != nil {
		return nil, err
	}
	regs, err := registrations(out)
	if err != nil {
		return nil, err
	}
	infos := make([]pathInfo, len(sps))
	for i, sp := range sps {
		reg := regs[sp.Path]
		infos[i] = pathInfo{Path: sp.Path, NarSize: sp.NarSize, References: sp.References, Registration: reg.json, Vouched: reg.vouched}
	}
	return infos, nil
}

// registrations are the entries of `nix path-info --json` by path, as
// re-encoded JSON (keys sorted).
func registrations(out []byte) (map[string]registration, error) {
	byPath := map[string]map[string]any{}
	var list []map[string]any
	if err := json.Unmarshal(out, &list); err == nil {
		for _, e := range list {
			if p, ok := e["path"].(string); ok {
				byPath[p] = e
			}
		}
	} else if err := json.Unmarshal(out, &byPath); err != nil {
		return nil, fmt.Errorf("parsing nix path-info output: %w", err)
	}
	regs := make(map[string]registration, len(byPath))
	for p, e := range byPath {
		b, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		// Nix 2.8 prints ca as a string, newer Nix (path-info JSON
		// version 2) as an object; either, when set, is a content
		// address. Calling a path vouched wrongly only has it hashed.
		sigs, _ := e["signatures"].([]any)
		regs[p] = registration{json: b, vouched: (e["ca"] != nil && e["ca"] != "") || len(sigs) > 0}
	}
	return regs, nil
}

// registration is a path's entry of `nix path-info --json`.
type registration struct {
	json []byte
	// vouched: the path is content-addressed or carries a signature.
	// One that is neither can never pass `nix store verify
	// --sigs-needed 1` (a locally built path, "ultimate", does not count
	// there), whatever the trusted keys: it is untrusted without being
	// hashed.
	vouched bool
}

type pathInfo struct {
	Path         string
	NarSize      int64
	References   []string
	Registration []byte
	Vouched      bool // see registration
}

// pathState fingerprints a store path as it is on disk in the cache dir:
// its registration and, for each of its files, its name, mode, size,
// inode and ctime (which writing, renaming, linking or chmod-ing it sets
// to the current time).
func pathState(dir string, p pathInfo) (string, error) {
	h := sha256.New()
	h.Write(p.Registration)
	root := filepath.Join(dir, "store", filepath.Base(p.Path))
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no inode information", path)
		}
		rel, _ := filepath.Rel(root, path)
		fmt.Fprintf(h, "%q %o %d %d %d.%d\n", rel, fi.Mode(), fi.Size(), st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("looking at %s: %w", p.Path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// cacheRecord is the record file's content.
type cacheRecord struct {
	// Keys are the trusted keys the paths were checked with: another set
	// checks every path again.
	Keys []string `json:"keys"`
	// Paths are the checked paths' states, Image the image's paths'
	// states when last put back.
	Paths map[string]string `json:"paths"`
	Image map[string]string `json:"image"`
	// ImageListed says Image lists all the image's paths (none, maybe).
	ImageListed bool `json:"imageListed"`
}

// readRecord returns the record of paths checked with keys, or nil when
// there is no usable record.
func readRecord(file string, keys []string) *cacheRecord {
	if file == "" {
		return nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var r cacheRecord
	if json.Unmarshal(b, &r) != nil || !slices.Equal(r.Keys, slices.Sorted(slices.Values(keys))) {
		return nil
	}
	return &r
}

func writeRecord(file string, r cacheRecord) error {
	r.Keys = slices.Sorted(slices.Values(r.Keys))
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := file + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing the cache record: %w", err)
	}
	return os.Rename(tmp, file)
}

func pathsByName(all []pathInfo) map[string]pathInfo {
	m := make(map[string]pathInfo, len(all))
	for _, p := range all {
		m[p.Path] = p
	}
	return m
}

// referrersClosure is bad and every path of all that refers to one of
// them, directly or not, sorted.
func referrersClosure(all []pathInfo, bad []string) []string {
	referrers := map[string][]string{}
	for _, p := range all {
		for _, r := range p.References {
			if r != p.Path {
				referrers[r] = append(referrers[r], p.Path)
			}
		}
	}
	seen := map[string]bool{}
	queue := slices.Clone(bad)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		queue = append(queue, referrers[p]...)
	}
	return slices.Sorted(maps.Keys(seen))
}

// verifyFailure is how `nix store verify` names a path that fails.
var verifyFailure = regexp.MustCompile(`(?m)^path '(/nix/store/[^'/]+)' (?:is untrusted|was modified!)`)

// untrusted runs `nix store verify --sigs-needed 1` on paths and returns
// those whose content does not match their NAR hash or that are neither
// signed by a trusted key nor content-addressed. A failure it cannot
// attribute to paths is an error.
func (o Nix) untrusted(ctx context.Context, paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	var bad []string
	// In chunks: thousands of paths would overflow a command line.
	for chunk := range slices.Chunk(paths, 2000) {
		tail := &bytes.Buffer{}
		o2 := o
		o2.Stderr = io.MultiWriter(tail, orDiscard(o.Stderr))
		_, err := o2.nix(ctx, "nix store verify", append([]string{"store", "verify", "--sigs-needed", "1", "--"}, chunk...)...)
		found := verifyFailure.FindAllStringSubmatch(tail.String(), -1)
		for _, m := range found {
			bad = append(bad, m[1])
		}
		if err != nil && len(found) == 0 {
			return nil, err
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(bad))), nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// nixStore runs `nix-store --store <o.Store> <args>` (the legacy command,
// for what the nix command lacks in Nix 2.8) and returns its stdout.
func (o Nix) nixStore(ctx context.Context, op string, args ...string) ([]byte, error) {
	var stdout bytes.Buffer
	full := append([]string{"--store", o.Store}, args...)
	if err := o.run(ctx, op, o.nixStoreBinary(), full, &stdout); err != nil {
		return nil, err
	}
	return stdout.Bytes(), nil
}

// nixStoreBinary is nix-store beside o's nix binary.
func (o Nix) nixStoreBinary() string {
	if o.Nix == "" {
		return "nix-store"
	}
	return filepath.Join(filepath.Dir(o.Nix), "nix-store")
}

// copyRegistrations registers in the store to what the store from says
// of its paths (`nix-store --dump-db | nix-store --load-db`): hashes,
// sizes, references, signatures.
func (o Nix) copyRegistrations(ctx context.Context, from, to string) error {
	dump := exec.CommandContext(ctx, o.nixStoreBinary(), "--store", from, "--dump-db")
	dump.Env = o.env()
	load := exec.CommandContext(ctx, o.nixStoreBinary(), "--store", to, "--load-db")
	load.Env = o.env()
	pipe, err := dump.StdoutPipe()
	if err != nil {
		return err
	}
	load.Stdin = pipe
	var dumpErr, loadErr tailBuffer
	dump.Stderr, load.Stderr = &dumpErr, &loadErr
	if err := dump.Start(); err != nil {
		return fmt.Errorf("nix-store --dump-db: %w", err)
	}
	lerr := load.Run()
	derr := dump.Wait()
	if derr != nil {
		return &NixError{Op: "nix-store --dump-db", Tail: dumpErr.Tail(tailLines), Err: derr}
	}
	if lerr != nil {
		return &NixError{Op: "nix-store --load-db", Tail: loadErr.Tail(tailLines), Err: lerr}
	}
	return nil
}

// writeRoots makes dir hold one GC root (a symlink) per store path, and
// nothing else.
func writeRoots(dir string, paths []string) error {
	tmp := dir + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	for _, p := range slices.Compact(slices.Sorted(slices.Values(paths))) {
		if err := os.Symlink(p, filepath.Join(tmp, filepath.Base(p))); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return errors.Join(err, os.RemoveAll(tmp))
	}
	return nil
}

// derivationIsIntact reports whether the .drv at path (in the cache
// directory dir) is what its store path says it is: a derivation's path
// is the hash of its content and references (Nix's makeTextPath), so a
// changed file or reference list no longer matches the path.
func derivationIsIntact(dir string, p pathInfo) bool {
	var reg struct {
		References []string `json:"references"`
	}
	if json.Unmarshal(p.Registration, &reg) != nil {
		return false
	}
	real := filepath.Join(dir, "store", filepath.Base(p.Path))
	if fi, err := os.Lstat(real); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	content, err := os.ReadFile(real)
	if err != nil {
		return false
	}
	base := filepath.Base(p.Path)
	_, name, ok := strings.Cut(base, "-")
	if !ok {
		return false
	}
	return textPath(name, content, reg.References) == p.Path
}

// textPath is the store path Nix gives a text file (a derivation) of
// this name, content and references: makeStorePath("text:<refs>",
// sha256(content), name).
func textPath(name string, content []byte, refs []string) string {
	sum := sha256.Sum256(content)
	typ := "text"
	for _, r := range slices.Sorted(slices.Values(refs)) {
		typ += ":" + r
	}
	s := typ + ":sha256:" + hex.EncodeToString(sum[:]) + ":/nix/store:" + name
	h := sha256.Sum256([]byte(s))
	var compressed [20]byte
	for i, b := range h {
		compressed[i%20] ^= b
	}
	return "/nix/store/" + nixBase32(compressed[:]) + "-" + name
}

// nixBase32 is Nix's base-32 encoding of hashes (its own alphabet, bytes
// read from the end).
func nixBase32(b []byte) string {
	const chars = "0123456789abcdfghijklmnpqrsvwxyz"
	n := (len(b)*8-1)/5 + 1
	out := make([]byte, 0, n)
	for i := n - 1; i >= 0; i-- {
		bit := i * 5
		j, k := bit/8, bit%8
		c := b[j] >> k
		if j+1 < len(b) {
			c |= b[j+1] << (8 - k)
		}
		out = append(out, chars[c&0x1f])
	}
	return string(out)
}
