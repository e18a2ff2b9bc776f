package image

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// A tree is the file tree of one layer, keyed by destination path, built
// from store paths before anything is written so that the tar stream can be
// emitted in sorted order whatever order the sources were listed or read in.
type tree struct {
	root   *os.Root
	budget *budget
	top    *node
	checks []*narCheck // one per store path added
}

type nodeKind uint8

const (
	kindImplicitDir nodeKind = iota // a parent directory no source lists
	kindDir
	kindFile
	kindSymlink
)

type node struct {
	kind     nodeKind
	src      string // path below the tree's root (for reading files)
	size     int64
	mode     int64
	uid, gid int
	uname    string
	gname    string
	link     string
	children map[string]*node
	nar      *narCheck // for a file: the check of the store path it is in
}

// pathOptions are nix2container's per-path options, compiled.
type pathOptions struct {
	rewrite           *regexp.Regexp
	repl              string
	ignoreDestination *regexp.Regexp
	perms             []permRule
}

type permRule struct {
	re       *regexp.Regexp
	mode     int64 // -1: keep
	orMode   int64
	uid, gid int
	uname    string
	gname    string
}

func newTree(root *os.Root, b *budget) *tree {
	return &tree{root: root, budget: b, top: &node{kind: kindImplicitDir, children: map[string]*node{}}}
}

// addStorePath adds the store path sp (e.g. /nix/store/<hash>-name), read
// from <root>/nix/store/…, under its own name or where opts rewrite it to.
// Nothing on disk is followed: symlinks become symlinks, and the root
// confines every open to the store root. narHash is what the build claims
// sp holds ("" if it does not say): writeTar checks what it reads of sp
// against it.
func (t *tree) addStorePath(sp string, opts *pathOptions, narHash string) error {
	check := newNarCheck(t.root, sp, narHash)
	t.checks = append(t.checks, check)
	return t.walk(strings.TrimPrefix(sp, "/"), sp, opts, check, false)
}

// walk adds rel and what is below it, in NAR order (entries sorted by
// name), recording each entry in check. Below a path ignoreDestination
// leaves out (omitted), entries are only recorded, for the NAR hash.
func (t *tree) walk(rel, storeForm string, opts *pathOptions, check *narCheck, omitted bool) error {
	fi, err := t.root.Lstat(rel)
	if err != nil {
		return fmt.Errorf("reading %s: %w", storeForm, unwrapPathErr(err))
	}
	if err := t.budget.takeEntry(); err != nil {
		return fmt.Errorf("reading %s: %w", storeForm, err)
	}
	n := &node{src: rel, mode: 0o444}
	// Executable as Nix has it (the owner's bit), so that a layer is a
	// function of the paths' NAR serialisations alone.
	exec := fi.Mode()&0o100 != 0
	switch m := fi.Mode(); {
	case m.IsRegular():
		n.kind, n.size, n.nar = kindFile, fi.Size(), check
		if exec {
			n.mode = 0o555
		}
		if err := t.budget.takeBytes(n.size); err != nil {
			return fmt.Errorf("reading %s: %w", storeForm, err)
		}
	case m.IsDir():
		n.kind, n.mode = kindDir, 0o555
	case m&fs.ModeSymlink != 0:
		n.kind, n.mode = kindSymlink, 0o777
		if n.link, err = t.root.Readlink(rel); err != nil {
			return fmt.Errorf("reading %s: %w", storeForm, unwrapPathErr(err))
		}
	default:
		return fmt.Errorf("%s is a %s; store paths hold only files, directories and symlinks", storeForm, m.Type())
	}
	dst, keep := destination(storeForm, opts)
	if !keep && dst != "" {
		// ignoreDestination matched: leave out the whole subtree
		// (it is still read for the store path's NAR hash).
		omitted = true
	}
	check.add(n, exec, omitted)
	if keep && !omitted {
		if opts != nil {
			opts.applyPerms(storeForm, n)
		}
		if err := t.put(dst, n); err != nil {
			return err
		}
	}
	if n.kind != kindDir {
		return nil
	}
	d, err := t.root.Open(rel)
	if err != nil {
		return fmt.Errorf("reading %s: %w", storeForm, unwrapPathErr(err))
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("reading %s: %w", storeForm, unwrapPathErr(err))
	}
	sort.Strings(names)
	for _, name := range names {
		if err := t.walk(rel+"/"+name, storeForm+"/"+name, opts, check, omitted); err != nil {
			return err
		}
	}
	return nil
}

// destination maps a source path in store form to its absolute path in the
// image. keep is false for a path that is not written: one rewritten to the
// root (dst "") or one ignoreDestination matches (dst non-empty).
func destination(storeForm string, opts *pathOptions) (dst string, keep bool) {
	dst = storeForm
	if opts != nil && opts.rewrite != nil {
		dst = opts.rewrite.ReplaceAllString(dst, opts.repl)
	}
	dst = path.Clean("/" + dst)
	if dst == "/" {
		return "", false
	}
	if opts != nil && opts.ignoreDestination != nil && opts.ignoreDestination.MatchString(dst) {
		return dst, false
	}
	return dst, true
}

func (o *pathOptions) applyPerms(storeForm string, n *node) {
	for _, p := range o.perms {
		if !p.re.MatchString(storeForm) {
			continue
		}
		n.uid, n.gid = p.uid, p.gid
		if p.uname != "" {
			n.uname = p.uname
		}
		if p.gname != "" {
			n.gname = p.gname
		}
		if p.mode >= 0 {
			n.mode = p.mode
		}
		n.mode |= p.orMode
	}
}

// put places n at the absolute path dst, creating implicit parents. Two
// sources may both give a directory (they merge) or the same kind of entry of
// the same size (the later wins, as in nix2container); anything else is a
// conflict.
func (t *tree) put(dst string, n *node) error {
	parts := strings.Split(strings.TrimPrefix(dst, "/"), "/")
	cur := t.top
	for i, p := range parts {
		if cur.kind == kindFile || cur.kind == kindSymlink {
			return fmt.Errorf("%s is written below %s, which is not a directory", dst, "/"+strings.Join(parts[:i], "/"))
		}
		next, ok := cur.children[p]
		if i == len(parts)-1 {
			if !ok {
				if n.kind == kindDir {
					n.children = map[string]*node{}
				}
				cur.children[p] = n
				return nil
			}
			switch {
			case next.kind == kindImplicitDir && n.kind == kindDir:
				n.children = next.children
				cur.children[p] = n
			case next.kind == kindDir && n.kind == kindDir:
			case next.kind == n.kind && next.size == n.size && next.link == n.link:
				cur.children[p] = n
			default:
				return fmt.Errorf("two sources write %s with different contents", dst)
			}
			return nil
		}
		if !ok {
			next = &node{kind: kindImplicitDir, children: map[string]*node{}}
			cur.children[p] = next
		}
		cur = next
	}
	return nil
}

// writeTar writes the tree as a reproducible tar stream, checking on the
// way what it reads of each store path against the NAR hash claimed for
// it. verified says that every store path was read whole and matches its
// claim; a store path read whole that does not is a NarMismatchError.
func (t *tree) writeTar(w io.Writer) (verified bool, err error) {
	tw := tar.NewWriter(w)
	buf := make([]byte, 256<<10)
	if err := t.writeNode(tw, "", t.top, buf); err != nil {
		return false, err
	}
	if err := tw.Close(); err != nil {
		return false, err
	}
	verified = len(t.checks) > 0
	for _, c := range t.checks {
		ok, err := c.finish()
		if err != nil {
			return false, err
		}
		verified = verified && ok
	}
	return verified, nil
}

func (t *tree) writeNode(tw *tar.Writer, name string, n *node, buf []byte) error {
	if name != "" {
		hdr := &tar.Header{
			Name:    name,
			Mode:    n.mode,
			Uid:     n.uid,
			Gid:     n.gid,
			Uname:   n.uname,
			Gname:   n.gname,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		switch n.kind {
		case kindImplicitDir:
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
		case kindDir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case kindSymlink:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, n.link
		case kindFile:
			hdr.Typeflag, hdr.Size = tar.TypeReg, n.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
		if n.kind == kindFile {
			if err := t.copyFile(tw, n, buf); err != nil {
				return err
			}
		}
	}
	names := make([]string, 0, len(n.children))
	for k := range n.children {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		child := k
		if name != "" {
			child = name + "/" + k
		}
		if err := t.writeNode(tw, child, n.children[k], buf); err != nil {
			return err
		}
	}
	return nil
}

func (t *tree) copyFile(w io.Writer, n *node, buf []byte) error {
	f, err := t.root.Open(n.src)
	if err != nil {
		return fmt.Errorf("reading /%s: %w", n.src, unwrapPathErr(err))
	}
	defer f.Close()
	if n.nar != nil {
		w = io.MultiWriter(w, n.nar.contents(n))
	}
	// Hide WriteTo so that CopyBuffer uses buf.
	c, err := io.CopyBuffer(w, struct{ io.Reader }{io.LimitReader(f, n.size)}, buf)
	if err != nil {
		return fmt.Errorf("reading /%s: %w", n.src, err)
	}
	if c != n.size {
		return fmt.Errorf("/%s changed while it was read (%d bytes, expected %d)", n.src, c, n.size)
	}
	return nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// parseMode parses an octal permission string such as "0755".
func parseMode(s string) (int64, error) {
	m, err := strconv.ParseUint(s, 8, 12)
	if err != nil {
		return 0, fmt.Errorf("invalid mode %q (want octal permission bits like \"0755\")", s)
	}
	return int64(m), nil
}
