package image

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixhash"
)

// A narCheck checks that what the push read of one store path is what the
// build claims the path holds: the SHA-256 of its NAR serialisation (Nix's
// archive format, whose hash `nix path-info` reports as narHash) equals
// the claimed hash. It hashes the NAR from the very reads the tree makes
// to write the layer's tar, so the store is read once.
//
// The tree walks a store path in NAR order (entries sorted by name,
// depth first), recording each entry; the tar is written in the order of
// destinations, which for a store path kept under its own name (closure
// mode, nix2container paths without a rewrite) is the same order. So the
// check emits the recorded entries up to each file as the tar reaches it,
// and that file's contents as they are copied. A file ignoreDestination
// leaves out of the tar is read by the check itself, in its place. A file
// the tar does not read (a later source replaced it) or reads out of NAR
// order (a rewrite that reorders) leaves the check incomplete: nothing is
// claimed about the content then, and its layer is not recorded for reuse.
type narCheck struct {
	root      *os.Root
	storePath string // in store form, /nix/store/…
	prefix    int    // length of the store path's form below the tree's root
	claim     string // the claimed narHash, SRI; "" when none
	entries   []narEntry
	next      int // the first entry not yet emitted

	h          hash.Hash
	w          *nar.Writer // made at the first entry emitted
	incomplete bool
}

// A narEntry is one entry of a store path, as the walk found it.
type narEntry struct {
	n       *node
	exec    bool // the source file's executable bit (perms may change n.mode)
	omitted bool // not in the tar: a file is read by the check
}

// byTar says whether the tar reads the entry's contents.
func (e narEntry) byTar() bool { return e.n.kind == kindFile && !e.omitted }

// newNarCheck checks storePath, read from root, against claim.
func newNarCheck(root *os.Root, storePath, claim string) *narCheck {
	// Without a claim there is nothing to check: nothing is hashed.
	return &narCheck{root: root, storePath: storePath, prefix: len(storePath) - 1, claim: claim, incomplete: claim == ""}
}

// add records the next entry of the store path in NAR order.
func (c *narCheck) add(n *node, exec, omitted bool) {
	c.entries = append(c.entries, narEntry{n: n, exec: exec, omitted: omitted})
}

// contents returns where the contents of file n go as the tar copies them,
// after emitting the entries that come before it; io.Discard when the
// check is incomplete or n is not its next file.
func (c *narCheck) contents(n *node) io.Writer {
	for !c.incomplete && c.next < len(c.entries) {
		e := c.entries[c.next]
		if e.byTar() && e.n != n {
			// Another file comes first in NAR order: the tar
			// reads this store path in another order.
			c.incomplete = true
			break
		}
		c.next++
		c.emit(e)
		if e.n == n && !c.incomplete {
			return contentsWriter{c}
		}
	}
	c.incomplete = true
	return io.Discard
}

// emit writes the NAR header of one entry.
func (c *narCheck) emit(e narEntry) {
	if c.w == nil {
		c.h = sha256.New()
		w, err := nar.NewWriter(c.h)
		if err != nil {
			c.incomplete = true
			return
		}
		c.w = w
	}
	hdr := &nar.Header{Path: "/" + e.n.src[min(len(e.n.src), c.prefix+1):]}
	switch e.n.kind {
	case kindDir:
		hdr.Type = nar.TypeDirectory
	case kindSymlink:
		hdr.Type, hdr.LinkTarget = nar.TypeSymlink, e.n.link
	case kindFile:
		hdr.Type, hdr.Size, hdr.Executable = nar.TypeRegular, e.n.size, e.exec
	}
	if err := c.w.WriteHeader(hdr); err != nil {
		c.incomplete = true
		return
	}
	if e.omitted && e.n.kind == kindFile {
		c.readOmitted(e.n)
	}
}

// readOmitted hashes the contents of a file the tar leaves out.
func (c *narCheck) readOmitted(n *node) {
	f, err := c.root.Open(n.src)
	if err != nil {
		c.incomplete = true
		return
	}
	defer f.Close()
	if copied, err := io.Copy(c.w, io.LimitReader(f, n.size)); err != nil || copied != n.size {
		c.incomplete = true
	}
}

// contentsWriter feeds a file's contents to the NAR hash. It never fails
// the tar it is copied alongside: a NAR writer error only leaves the check
// incomplete.
type contentsWriter struct{ c *narCheck }

func (cw contentsWriter) Write(p []byte) (int, error) {
	if !cw.c.incomplete {
		if _, err := cw.c.w.Write(p); err != nil {
			cw.c.incomplete = true
		}
	}
	return len(p), nil
}

// finish emits what is left after the last file and says whether the
// content read is verified: complete, with a claim, and hashing to it. A
// complete read that hashes to something else is a NarMismatchError.
func (c *narCheck) finish() (verified bool, err error) {
	for !c.incomplete && c.next < len(c.entries) {
		e := c.entries[c.next]
		if e.byTar() {
			c.incomplete = true // the tar never read it: another source replaced it
			break
		}
		c.next++
		c.emit(e)
	}
	if c.w != nil {
		if err := c.w.Close(); err != nil {
			c.incomplete = true
		}
		c.w = nil
	}
	if c.incomplete || c.claim == "" || c.h == nil {
		return false, nil
	}
	want, err := nixhash.ParseAny(c.claim, nil)
	if err != nil || want.Algo() != nixhash.SHA256 {
		return false, nil
	}
	got := c.h.Sum(nil)
	if !bytes.Equal(got, want.Digest()) {
		gotHash := nixhash.MustNewHash(nixhash.SHA256, got)
		return false, &NarMismatchError{StorePath: c.storePath, Claimed: c.claim, Read: gotHash.Format(nixhash.SRI, true)}
	}
	return true, nil
}

// abandon ends an unfinished check (the layer failed).
func (c *narCheck) abandon() {
	c.incomplete = true
	if c.w != nil {
		_ = c.w.Close() // ends the writer's goroutine; its error says only that the NAR is unfinished
		c.w = nil
	}
}

// NarMismatchError is a store path whose content, as the push read it,
// has another NAR hash than the build claims: the workspace or the store
// it was copied from was altered after Nix registered the path. Such a
// path is not pushed.
type NarMismatchError struct {
	StorePath, Claimed, Read string
}

func (e *NarMismatchError) Error() string {
	return fmt.Sprintf("%s holds other content than Nix registered (NAR hash %s, read %s): the store or the workspace was altered; nothing of it is pushed",
		e.StorePath, e.Claimed, e.Read)
}
