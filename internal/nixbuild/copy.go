package nixbuild

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// linkOrCopy makes dst hold the content of the regular file src: a hard link
// when both are on one file system, else a copy.
func linkOrCopy(src, dst string) error {
	if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst, 0o644)
}

func copyFile(src, dst string, perm fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err = io.Copy(out, in); err != nil {
		return err
	}
	// O_CREATE applies the umask; set the mode exactly.
	return out.Chmod(perm)
}

// copyStorePath copies the store path src (a directory, file or symlink) to
// dst, keeping symlinks as symlinks and permission bits, via a temporary name
// so that dst either is complete or does not exist.
func copyStorePath(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".partial"
	if err := RemoveAllWritable(tmp); err != nil {
		return err
	}
	if err := copyTree(src, tmp, false); err != nil {
		_ = RemoveAllWritable(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// copyTree copies the tree src to dst (which must not exist), keeping
// symlinks as symlinks and permission bits. Other special files are
// skipped when skipSpecial (a Nix daemon's socket in a store seeded from
// an image), else refused: a store path cannot hold them. Directories are
// made writable while filling them and get their mode afterwards, deepest
// first.
func copyTree(src, dst string, skipSpecial bool) error {
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch mode := info.Mode(); {
		case mode.IsDir():
			if err := os.Mkdir(target, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{target, mode.Perm()})
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case mode.IsRegular():
			return copyFile(path, target, mode.Perm())
		case !skipSpecial:
			return fmt.Errorf("%s is a %v, which a store path cannot hold", path, mode.Type())
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return err
		}
	}
	return nil
}

// RemoveAllWritable removes path like os.RemoveAll, first making its
// directories writable: store paths copied into a workspace are read-only,
// so a workspace is removed with this.
func RemoveAllWritable(path string) error {
	if _, err := os.Lstat(path); os.IsNotExist(err) {
		return nil
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(path)
}
