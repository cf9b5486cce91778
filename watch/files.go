package watch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/meshwaf/meshwaf/store"
)

// FilesConfig configures a Files source.
type FilesConfig struct {
	// Dir is the folder of manifests; files ending in .yaml or .yml, in any
	// subfolder, are read.
	Dir   string
	Store *store.Store
	// Validate checks policies beyond their field rules (optional).
	Validate PolicyValidator
	Logger   *slog.Logger
	// PollInterval is how often the folder is checked for changes.
	// Polling, rather than inotify, survives editors that replace files by
	// rename and folders mounted from ConfigMaps. Default 100ms: a poll
	// reads and hashes the folder (microseconds for a few hundred KiB of
	// manifests), and only a changed file is parsed again.
	PollInterval time.Duration
}

// Files is a Source reading a folder of multi-document YAML manifests.
type Files struct {
	cfg        FilesConfig
	synced     chan struct{}
	syncedOnce sync.Once

	// lastDigest is the content digest of the folder at the last load.
	lastDigest [sha256.Size]byte
	// lastGood holds the last valid version of every object, so an invalid
	// edit keeps the previous version in force.
	lastGood map[store.ObjectRef]any
	// parsed caches, by path, what each file's content gave at the last
	// load.
	parsed map[string]parsedFile
	// read reads the folder (readManifests; tests replace it).
	read func() ([]manifestFile, error)
	// rejected, when set, also receives every rejected document (Load).
	rejected func(error)
}

// settle is how long after seeing the folder change it is read again; the
// change is applied only if both reads agree. A file written in place
// (os.WriteFile, shell redirection) is empty or half written for a moment
// after it is truncated, and a poll that lands in that moment would
// otherwise apply a folder without the file's objects: the policy would be
// lifted, not kept at its last good version. A change still under way is
// picked up by a later poll.
const settle = 20 * time.Millisecond

// NewFiles returns a Files source; it reads nothing until Start.
func NewFiles(cfg FilesConfig) *Files {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &Files{cfg: cfg, synced: make(chan struct{}), lastGood: map[store.ObjectRef]any{}}
	f.read = func() ([]manifestFile, error) { return readManifests(cfg.Dir) }
	return f
}

// Synced is closed after the first load.
func (f *Files) Synced() <-chan struct{} { return f.synced }

// Start loads the folder, then reloads it whenever its content changes,
// until ctx is done. It fails only if the folder cannot be read at start.
func (f *Files) Start(ctx context.Context) error {
	if err := f.reload(); err != nil {
		return err
	}
	ticker := time.NewTicker(f.cfg.PollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			if err := f.reload(); err != nil {
				// The folder vanished or became unreadable; keep what we
				// have and say so.
				f.cfg.Logger.Error("manifest folder unreadable, keeping last good configuration", "dir", f.cfg.Dir, "error", err)
			}
		}
	}
}

// manifestFile is one file's path, content and the content's hash.
type manifestFile struct {
	path    string
	content []byte
	digest  [sha256.Size]byte
}

func (f *Files) reload() error {
	files, err := f.read()
	if err != nil {
		return err
	}
	digest := digestOf(files)
	if digest == f.lastDigest {
		return nil
	}
	time.Sleep(settle)
	again, err := f.read()
	if err != nil {
		return err
	}
	if digestOf(again) != digest {
		return nil // still being written
	}
	objs := f.load(files)
	if err := f.cfg.Store.Replace(objs); err != nil {
		return fmt.Errorf("writing store: %w", err)
	}
	f.lastDigest = digest
	f.cfg.Logger.Info("manifests loaded", "dir", f.cfg.Dir, "files", len(files),
		"gateways", len(objs.Gateways), "routes", len(objs.Routes), "policies", len(objs.Policies))
	f.syncedOnce.Do(func() { close(f.synced) })
	return nil
}

// load converts every file into records. A file that is not valid YAML
// keeps all objects it had before; an invalid object keeps its previous
// version. Each problem is logged with the file and the reason. A file
// whose content is unchanged since the last load gives the records it gave
// then, without being parsed again: one edit in a folder of thousands of
// hosts costs the parse of one file.
func (f *Files) load(files []manifestFile) store.Objects {
	byRef := map[store.ObjectRef]any{}
	origin := map[store.ObjectRef]string{}
	parsed := make(map[string]parsedFile, len(files))
	for _, file := range files {
		p, ok := f.parsed[file.path]
		if !ok || p.digest != file.digest {
			p = parsedFile{digest: file.digest, records: f.parse(file)}
		}
		parsed[file.path] = p
		for _, r := range p.records {
			if prev, dup := origin[r.ref]; dup && prev != file.path {
				f.cfg.Logger.Warn("object defined twice, the later file wins", "object", r.ref.String(), "file", file.path, "previous", prev)
			}
			byRef[r.ref], origin[r.ref] = r.record, file.path
		}
	}
	f.parsed = parsed
	f.lastGood = byRef
	return collect(byRef)
}

// parsedFile is what one file's content gave.
type parsedFile struct {
	digest  [sha256.Size]byte
	records []fileRecord
}

type fileRecord struct {
	ref    store.ObjectRef
	record any
}

// parse converts one file's documents into records, in order.
func (f *Files) parse(file manifestFile) []fileRecord {
	var out []fileRecord
	docs, err := splitDocuments(file.content)
	if err != nil {
		f.reject(file.path, "", err)
		for ref, record := range f.lastGood {
			if sourceOf(record) == file.path {
				out = append(out, fileRecord{ref, record})
			}
		}
		slices.SortFunc(out, func(a, b fileRecord) int { return strings.Compare(a.ref.String(), b.ref.String()) })
		return out
	}
	for i, doc := range docs {
		ref, known, err := decodeHead(doc)
		if err != nil {
			f.reject(file.path, fmt.Sprintf("document %d", i+1), err)
			continue
		}
		if !known {
			continue
		}
		record, err := decode(ref, doc, f.cfg.Validate)
		if err != nil {
			f.reject(file.path, ref.String(), err)
			record = lastGood(record, f.lastGood[ref])
			if record == nil {
				continue
			}
		}
		setSource(record, file.path)
		out = append(out, fileRecord{ref, record})
	}
	return out
}

// lastGood is what stays in force when an object's newest version was
// rejected: for a policy, a record reporting the rejection while carrying
// the last accepted spec; for other kinds, the previous record (or nil).
func lastGood(rejected, prev any) any {
	if p, ok := rejected.(*store.Policy); ok && p != nil {
		prevPolicy, _ := prev.(*store.Policy)
		return p.KeepingSpecOf(prevPolicy)
	}
	return prev
}

func (f *Files) reject(path, object string, err error) {
	f.cfg.Logger.Error("manifest rejected", "file", path, "object", object, "error", err.Error())
	if f.rejected != nil {
		if object != "" {
			path += ": " + object
		}
		f.rejected(fmt.Errorf("%s: %w", path, err))
	}
}

// Load reads the manifests under path once, a folder as Files reads it or
// a single file, for tools that evaluate manifests rather than serve them
// (meshwaf test): the objects, and one error for every document that was
// rejected (which Files would only log).
func Load(path string, validate PolicyValidator) (store.Objects, []error, error) {
	f := NewFiles(FilesConfig{Dir: path, Validate: validate, Logger: slog.New(slog.DiscardHandler)})
	var rejected []error
	f.rejected = func(err error) { rejected = append(rejected, err) }
	files, err := f.read()
	if err != nil {
		return store.Objects{}, nil, err
	}
	if len(files) == 0 {
		return store.Objects{}, nil, fmt.Errorf("no .yaml or .yml manifests in %s", path)
	}
	return f.load(files), rejected, nil
}

func readManifests(dir string) ([]manifestFile, error) {
	var files []manifestFile
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Skip hidden files and folders: editors' swap files, and the
		// "..data" links of a mounted ConfigMap (the files are read through
		// their top-level links instead).
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return nil
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files = append(files, manifestFile{path: path, content: content, digest: sha256.Sum256(content)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading manifests in %s: %w", dir, err)
	}
	slices.SortFunc(files, func(a, b manifestFile) int { return strings.Compare(a.path, b.path) })
	return files, nil
}

// digestOf is the folder's digest: its paths and their contents' hashes.
func digestOf(files []manifestFile) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f.path)
		h.Write(f.digest[:])
	}
	var d [sha256.Size]byte
	copy(d[:], h.Sum(nil))
	return d
}

// splitDocuments splits multi-document YAML and converts each non-empty
// document to JSON. Any syntax error fails the whole file.
func splitDocuments(content []byte) ([][]byte, error) {
	reader := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(content)))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if string(bytes.TrimSpace(js)) == "null" {
			continue // a document of only comments
		}
		docs = append(docs, js)
	}
}

func sourceOf(record any) string {
	switch r := record.(type) {
	case *store.Gateway:
		return r.Source
	case *store.Route:
		return r.Source
	case *store.Policy:
		return r.Source
	}
	return ""
}

func setSource(record any, source string) {
	switch r := record.(type) {
	case *store.Gateway:
		r.Source = source
	case *store.Route:
		r.Source = source
	case *store.Policy:
		r.Source = source
	}
}

func collect(byRef map[store.ObjectRef]any) store.Objects {
	var objs store.Objects
	for _, record := range byRef {
		objs.Add(record)
	}
	return objs
}
