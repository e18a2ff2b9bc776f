package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"
)

// A narCheck checks that what the push read of one store path is what the
// build claims the path holds: the SHA-256 of its NAR serialisation (Nix's
// archive format, whose hash `nix path-info` reports as narHash) equals
// the claimed hash. It hashes the NAR from the very reads the tree makes
// to write the layer's tar, so the store is read once. (go-nix has a NAR
// writer, but it runs a goroutine per archive and refuses entry names that
// start with "..", which a store path may hold.)
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

	h          hash.Hash // made at the first entry emitted
	open       []int     // depths of the directories open in the NAR
	file       *narEntry // the file whose contents are being written
	written    int64     // of file's contents
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

// The NAR format (Nix's archive of a file system object): strings are a
// little-endian 64-bit length, the bytes and zero padding to 8 bytes; a
// node is ( type regular [executable ""] contents <bytes> ), ( type
// symlink target <target> ), or ( type directory, then entry ( name <name>
// node <node> ) for each entry in name order, then ).

func (c *narCheck) str(s string) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
	c.h.Write(n[:])
	io.WriteString(c.h, s)
	c.pad(int64(len(s)))
}

func (c *narCheck) pad(n int64) {
	var zeros [8]byte
	c.h.Write(zeros[:(8-n%8)%8])
}

// depth is how far below the store path e is (0 for the path itself).
func (c *narCheck) depth(e narEntry) int {
	if len(e.n.src) <= c.prefix {
		return 0
	}
	return strings.Count(e.n.src[c.prefix:], "/")
}

// emit writes one entry up to its contents, first closing the file and
// directories it comes after.
func (c *narCheck) emit(e narEntry) {
	if c.h == nil {
		c.h = sha256.New()
		c.str("nix-archive-1")
	}
	c.endFile()
	d := c.depth(e)
	c.closeDirs(d)
	if d > 0 {
		c.str("entry")
		c.str("(")
		c.str("name")
		c.str(path.Base(e.n.src))
		c.str("node")
	}
	c.str("(")
	c.str("type")
	switch e.n.kind {
	case kindDir:
		c.str("directory")
		c.open = append(c.open, d)
		return
	case kindSymlink:
		c.str("symlink")
		c.str("target")
		c.str(e.n.link)
		c.closeNode(d)
		return
	}
	c.str("regular")
	if e.exec {
		c.str("executable")
		c.str("")
	}
	c.str("contents")
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(e.n.size))
	c.h.Write(n[:])
	c.file, c.written = &e, 0
	if e.omitted {
		c.readOmitted(e.n)
	}
}

// closeNode ends a node at depth d, and the entry it is in.
func (c *narCheck) closeNode(d int) {
	c.str(")")
	if d > 0 {
		c.str(")")
	}
}

// closeDirs ends the open directories at depth d or deeper.
func (c *narCheck) closeDirs(d int) {
	for len(c.open) > 0 && c.open[len(c.open)-1] >= d {
		c.closeNode(c.open[len(c.open)-1])
		c.open = c.open[:len(c.open)-1]
	}
}

// endFile ends the file being written, which must be whole.
func (c *narCheck) endFile() {
	if c.file == nil {
		return
	}
	if c.written != c.file.n.size {
		c.incomplete = true
	}
	c.pad(c.written)
	c.closeNode(c.depth(*c.file))
	c.file = nil
}

// readOmitted hashes the contents of a file the tar leaves out.
func (c *narCheck) readOmitted(n *node) {
	f, err := c.root.Open(n.src)
	if err != nil {
		c.incomplete = true
		return
	}
	defer f.Close()
	if _, err := io.Copy(contentsWriter{c}, io.LimitReader(f, n.size)); err != nil {
		c.incomplete = true
	}
}

// contentsWriter feeds a file's contents to the NAR hash. It never fails
// the tar it is copied alongside: more bytes than the file's size only
// leave the check incomplete.
type contentsWriter struct{ c *narCheck }

func (cw contentsWriter) Write(p []byte) (int, error) {
	c := cw.c
	if !c.incomplete && c.file != nil {
		if c.written += int64(len(p)); c.written > c.file.n.size {
			c.incomplete = true
		} else {
			c.h.Write(p)
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
	if c.incomplete || c.h == nil {
		return false, nil
	}
	c.endFile()
	c.closeDirs(0)
	want, err := nixhash.ParseAny(c.claim, nil)
	if c.incomplete || err != nil || want.Algo() != nixhash.SHA256 {
		return false, nil
	}
	got := c.h.Sum(nil)
	if !bytes.Equal(got, want.Digest()) {
		gotHash := nixhash.MustNewHash(nixhash.SHA256, got)
		return false, &NarMismatchError{StorePath: c.storePath, Claimed: c.claim, Read: gotHash.Format(nixhash.SRI, true)}
	}
	return true, nil
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
