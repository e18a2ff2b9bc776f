package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/nix2container"
)

// n2cPlan is a checked nix2container image: what to build, layer by layer.
type n2cPlan struct {
	config  v1.Config
	created time.Time
	layers  []n2cPlanLayer
}

type n2cPlanLayer struct {
	key       string
	paths     []string
	opts      []*pathOptions
	layerPath string // a prebuilt tarball, in store form
	history   v1.History
}

const maxRegex = 4096

// parseNix2Container parses and checks nix2container's image JSON.
func parseNix2Container(data []byte, lim Options) (*n2cPlan, error) {
	img, err := nix2container.Parse(data)
	if err != nil {
		return nil, err
	}
	return planNix2Container(img, lim)
}

// planNix2Container checks nix2container's image and says what to build.
func planNix2Container(img *nix2container.Image, lim Options) (*n2cPlan, error) {
	lim = lim.orDefault()
	if img.Arch != "" && img.Arch != Architecture {
		return nil, fmt.Errorf("nix2container image is for %s; Heroku runs only %s", img.Arch, Architecture)
	}
	plan := &n2cPlan{created: epoch}
	if img.ImageConfig != nil {
		plan.config = *img.ImageConfig
	}
	if img.Created != nil {
		plan.created = img.Created.UTC()
	}
	npaths := 0
	for i, l := range img.Layers {
		switch mt := types.MediaType(l.MediaType); mt {
		case "", types.OCILayer, types.DockerLayer, types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		default:
			return nil, fmt.Errorf("layer %d has media type %s; Heroku takes only gzip-compressed layers", i, mt)
		}
		pl := n2cPlanLayer{history: l.History}
		switch {
		case l.LayerPath != "" && len(l.Paths) > 0:
			return nil, fmt.Errorf("layer %d has both paths and a layer-path", i)
		case l.LayerPath != "":
			if _, ok := artifact.StorePathOf(l.LayerPath); !ok {
				return nil, fmt.Errorf("layer %d: layer-path %q is not in the Nix store", i, l.LayerPath)
			}
			pl.layerPath = l.LayerPath
			pl.key = "n2c-tar:" + l.LayerPath
		case len(l.Paths) > 0:
			for j, p := range l.Paths {
				if npaths++; npaths > lim.MaxEntries {
					return nil, fmt.Errorf("nix2container image lists more than %d paths", lim.MaxEntries)
				}
				if !artifact.IsStorePath(p.Path) {
					return nil, fmt.Errorf("layer %d path %d: %q is not a store path", i, j, p.Path)
				}
				if p.Tar != "" {
					return nil, fmt.Errorf("layer %d path %d: tar sources are not supported", i, j)
				}
				o, err := compileOptions(p.Options)
				if err != nil {
					return nil, fmt.Errorf("layer %d path %s: %w", i, p.Path, err)
				}
				pl.paths = append(pl.paths, p.Path)
				pl.opts = append(pl.opts, o)
			}
			canon, err := json.Marshal(l.Paths)
			if err != nil {
				return nil, err
			}
			h := sha256.Sum256(canon)
			pl.key = "n2c:sha256:" + hex.EncodeToString(h[:])
		default:
			return nil, fmt.Errorf("layer %d has neither paths nor a layer-path (base images are not supported)", i)
		}
		plan.layers = append(plan.layers, pl)
	}
	return plan, nil
}

func compileOptions(o *nix2container.Options) (*pathOptions, error) {
	if o == nil {
		return nil, nil
	}
	compile := func(what, re string) (*regexp.Regexp, error) {
		if len(re) > maxRegex {
			return nil, fmt.Errorf("%s regex is longer than %d bytes", what, maxRegex)
		}
		c, err := regexp.Compile(re)
		if err != nil {
			return nil, fmt.Errorf("%s regex: %w", what, err)
		}
		return c, nil
	}
	po := &pathOptions{repl: o.Rewrite.Repl}
	var err error
	if o.Rewrite.Regex != "" {
		if po.rewrite, err = compile("rewrite", o.Rewrite.Regex); err != nil {
			return nil, err
		}
	}
	if o.IgnoreDestination != "" {
		if po.ignoreDestination, err = compile("ignoreDestination", o.IgnoreDestination); err != nil {
			return nil, err
		}
	}
	for _, p := range o.Perms {
		r := permRule{mode: -1, uid: p.UID, gid: p.GID, uname: p.Uname, gname: p.Gname}
		if r.re, err = compile("perms", p.Regex); err != nil {
			return nil, err
		}
		if p.UID < 0 || p.GID < 0 || p.UID > 1<<31-1 || p.GID > 1<<31-1 {
			return nil, fmt.Errorf("perms: uid/gid %d/%d out of range", p.UID, p.GID)
		}
		if len(p.Uname) > 32 || len(p.Gname) > 32 || strings.ContainsRune(p.Uname+p.Gname, 0) {
			return nil, errors.New("perms: invalid uname or gname")
		}
		if p.Mode != "" {
			if r.mode, err = parseMode(p.Mode); err != nil {
				return nil, fmt.Errorf("perms: %w", err)
			}
		}
		if p.OrMode != "" {
			if r.orMode, err = parseMode(p.OrMode); err != nil {
				return nil, fmt.Errorf("perms: orMode: %w", err)
			}
		}
		po.perms = append(po.perms, r)
	}
	return po, nil
}

// FromNix2Container makes an image from nix2container's image JSON, reading
// the store paths it lists (and any prebuilt layer-path tarballs) under
// storeRoot. Each layer is written again with herokunix's reproducible tar
// writer, honouring the path options rewrite, perms and ignoreDestination;
// nix2container's own digests are not used. An image of more layers than
// opts.MaxLayers has its lowest layers merged into one. closure gives the
// NAR hash the build claims for each store path: a layer prev records as
// made from the same paths, options and NAR hashes is reused without
// reading the files; prev may be nil.
func FromNix2Container(jsonPath, storeRoot string, closure []artifact.StorePath, opts Options, prev v1.Image) (v1.Image, Stats, error) {
	opts = opts.orDefault()
	doc, _, err := nix2container.ReadFile(jsonPath)
	if err != nil {
		return nil, Stats{}, err
	}
	plan, err := planNix2Container(doc, opts)
	if err != nil {
		return nil, Stats{}, err
	}
	narHashes := make(map[string]string, len(closure))
	for _, sp := range closure {
		narHashes[sp.Path] = sp.NarHash
	}
	plan.bindNarHashes(narHashes)
	// The store is opened only if a layer has to be built: when every
	// layer is reused, it need not even exist.
	var opened *os.Root
	openRoot := sync.OnceValues(func() (*os.Root, error) {
		r, err := os.OpenRoot(storeRoot)
		opened = r
		return r, err
	})
	defer func() {
		if opened != nil {
			opened.Close()
		}
	}()

	// Layers beyond the budget: the lowest ones are merged into one,
	// which the registry keeps under a key made of theirs.
	runs := mergeRuns(len(plan.layers), opts.MaxLayers)
	keys := make([]string, len(runs))
	history := make([]v1.History, len(runs))
	for i, run := range runs {
		pl := plan.layers[run[1]-1]
		keys[i] = pl.key
		if run[1]-run[0] > 1 {
			h := sha256.New()
			for _, m := range plan.layers[run[0]:run[1]] {
				fmt.Fprintln(h, m.key)
			}
			keys[i] = "merged:sha256:" + hex.EncodeToString(h.Sum(nil))
		}
		h := pl.history
		if run[1]-run[0] > 1 {
			h = v1.History{CreatedBy: mergedHistory(run[1] - run[0])}
		}
		if h.Created.IsZero() {
			h.Created = v1.Time{Time: plan.created}
		}
		if h.CreatedBy == "" {
			h.CreatedBy = "herokunix: nix2container layer"
		}
		h.EmptyLayer = false
		history[i] = h
	}
	buildOne := func(i int) (v1.Layer, bool, error) {
		pl := plan.layers[i]
		root, err := openRoot()
		if err != nil {
			return nil, false, fmt.Errorf("opening store root: %w", err)
		}
		var l v1.Layer
		var verified bool
		if pl.layerPath != "" {
			l, verified, err = prebuiltLayer(root, pl.layerPath, narHashes, &budget{lim: opts}, opts.TempDir)
		} else {
			l, err = spool(opts.TempDir, func(w io.Writer) error {
				t := newTree(root, &budget{lim: opts})
				for j, p := range pl.paths {
					if err := t.addStorePath(p, pl.opts[j], narHashes[p]); err != nil {
						return err
					}
				}
				var err error
				verified, err = t.writeTar(w)
				return err
			})
		}
		if err != nil {
			return nil, false, fmt.Errorf("nix2container layer %d: %w", i, err)
		}
		return l, verified, nil
	}
	set, err := obtainLayers(keys, newReuseIndex(prev), func(i int) (v1.Layer, bool, error) {
		run := runs[i]
		if run[1]-run[0] == 1 {
			return buildOne(run[0])
		}
		members := make([]v1.Layer, 0, run[1]-run[0])
		verified := true
		for j := run[0]; j < run[1]; j++ {
			l, ok, err := buildOne(j)
			if err != nil {
				return nil, false, err
			}
			members = append(members, l)
			verified = verified && ok
		}
		l, err := squash(members, opts.TempDir)
		if err != nil {
			return nil, false, fmt.Errorf("merging nix2container layers %d to %d: %w", run[0], run[1]-1, err)
		}
		return l, verified, nil
	})
	if err != nil {
		return nil, Stats{}, err
	}
	return finish(v1.ConfigFile{Created: v1.Time{Time: plan.created}, Config: plan.config}, set, history)
}

// bindNarHashes makes each layer's key name the NAR hashes the build
// claims for the store paths it is made from (a prebuilt tarball: for the
// store path it is in), so that a layer is reused only for the same
// content.
func (p *n2cPlan) bindNarHashes(narHashes map[string]string) {
	for i := range p.layers {
		pl := &p.layers[i]
		if pl.layerPath != "" {
			sp, _ := artifact.StorePathOf(pl.layerPath)
			pl.key = narKey(pl.key, narHashes[sp])
			continue
		}
		h := sha256.New()
		fmt.Fprintln(h, pl.key)
		for _, sp := range pl.paths {
			fmt.Fprintln(h, narKey(sp, narHashes[sp]))
		}
		pl.key = "n2c:sha256:" + hex.EncodeToString(h.Sum(nil))
	}
}

// prebuiltLayer reads a layer tarball (plain or gzip-compressed) from the
// store, checking it like a docker-archive's layers. verified says that
// the tarball is a store path of its own (not a file inside one) whose NAR
// hash, taken in the same read, matches the one narHashes claims for it:
// the NAR of a tarball inside a directory would need the rest of the
// directory read too, so such a layer is never recorded for reuse.
func prebuiltLayer(root *os.Root, storeForm string, narHashes map[string]string, b *budget, tmpDir string) (v1.Layer, bool, error) {
	f, err := root.Open(strings.TrimPrefix(storeForm, "/"))
	if err != nil {
		return nil, false, fmt.Errorf("opening %s: %w", storeForm, unwrapPathErr(err))
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, false, fmt.Errorf("%s is not a regular file", storeForm)
	}
	e := &archiveEntry{size: fi.Size()}
	if err := b.takeBytes(e.size); err != nil {
		f.Close()
		return nil, false, err
	}
	var r io.Reader = io.NewSectionReader(f, 0, fi.Size())
	var check *narCheck
	if lfi, err := root.Lstat(strings.TrimPrefix(storeForm, "/")); err == nil && lfi.Mode().IsRegular() && artifact.IsStorePath(storeForm) {
		// A store path that is the tarball itself (not a symlink to one).
		check = newNarCheck(root, storeForm, narHashes[storeForm])
		file := &node{kind: kindFile, src: strings.TrimPrefix(storeForm, "/"), size: fi.Size()}
		check.add(file, fi.Mode()&0o100 != 0, false)
		r = io.TeeReader(r, check.contents(file))
	}
	if err := checkArchiveFile(r, storeForm, e, b); err != nil {
		f.Close()
		return nil, false, err
	}
	if !e.layer {
		f.Close()
		return nil, false, fmt.Errorf("%s is neither a tar nor a gzip-compressed tar", storeForm)
	}
	verified := false
	if check != nil {
		if verified, err = check.finish(); err != nil {
			f.Close()
			return nil, false, err
		}
	}
	if e.gz {
		// f stays open for the layer; it is closed when collected.
		return &sectionLayer{r: io.NewSectionReader(f, 0, fi.Size()), digest: e.digest, diffID: e.diffID}, verified, nil
	}
	defer f.Close()
	l, err := spool(tmpDir, func(w io.Writer) error {
		_, err := io.Copy(w, io.NewSectionReader(f, 0, fi.Size()))
		return err
	})
	return l, verified, err
}
