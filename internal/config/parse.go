package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"gatehouse/internal/syntax"
)

// MaxFileBytes bounds the size of a configuration document.
const MaxFileBytes = 4 << 20

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads a YAML document, fills in defaults and validates it. Every
// problem is reported at once (joined with errors.Join), each naming the
// field path and what is wrong: `pools[1].members[0].address: "10.0.0.1" has
// no port`. An unknown field is an error.
func Parse(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("document larger than %d bytes", MaxFileBytes)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty document")
		}
		return nil, fmt.Errorf("yaml: %w", cleanYAMLError(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document; put everything in one")
	}
	cfg := &Config{}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, errors.New("empty document")
	}
	d := decoder{}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func cleanYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return errors.New(msg)
}

// decoder walks a YAML node tree and a Go value side by side, so every error
// can name the field path the operator wrote.
type decoder struct {
	errs  []error
	nodes int // nodes visited, bounding alias expansion
}

// maxNodes bounds how many nodes a document may expand to through aliases.
const maxNodes = 1 << 20

var (
	durationType = reflect.TypeOf(Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
)

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	p := path
	if p == "" {
		p = "(top level)"
	}
	d.errs = append(d.errs, fmt.Errorf("%s: %s (line %d)", p, fmt.Sprintf(format, args...), n.Line))
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.nodes++
	if d.nodes == maxNodes {
		d.fail(path, n, "document expands to more than %d nodes through aliases", maxNodes)
	}
	if d.nodes >= maxNodes {
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leave the zero value: defaults apply
	}
	if v.Kind() == reflect.Pointer { // an optional section, such as store.etcd
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	switch v.Type() {
	case durationType:
		d.scalar(n, path, func(s string) error {
			dur, err := ParseDuration(s)
			if err != nil {
				return err
			}
			v.SetInt(int64(dur))
			return nil
		})
		return
	case byteSizeType:
		d.scalar(n, path, func(s string) error {
			b, err := ParseByteSize(s)
			if err != nil {
				return err
			}
			v.SetInt(int64(b))
			return nil
		})
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(path, n, "expected a mapping of fields, got %s", kindName(n))
			return
		}
		fields := structFields(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			name := k.Value
			fp := join(path, name)
			if seen[name] {
				d.fail(fp, k, "field given twice")
				continue
			}
			seen[name] = true
			idx, ok := fields[name]
			if !ok {
				d.fail(fp, k, "unknown field%s", suggest(name, fields))
				continue
			}
			d.decode(val, v.Field(idx), fp)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		d.scalar(n, path, func(s string) error { v.SetString(s); return nil })
	case reflect.Bool:
		d.scalar(n, path, func(s string) error {
			var b bool
			if err := n.Decode(&b); err != nil {
				return fmt.Errorf("%q is not true or false", s)
			}
			v.SetBool(b)
			return nil
		})
	case reflect.Int, reflect.Int64, reflect.Int32:
		d.scalar(n, path, func(s string) error {
			i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
			if err != nil {
				return fmt.Errorf("%q is not a whole number", s)
			}
			if v.OverflowInt(i) {
				return fmt.Errorf("%s is out of range", s)
			}
			v.SetInt(i)
			return nil
		})
	case reflect.Float64:
		d.scalar(n, path, func(s string) error {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return fmt.Errorf("%q is not a number", s)
			}
			v.SetFloat(f)
			return nil
		})
	default:
		d.fail(path, n, "unsupported field type %s", v.Type())
	}
}

func (d *decoder) scalar(n *yaml.Node, path string, set func(string) error) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n, "expected a single value, got %s", kindName(n))
		return
	}
	if err := set(n.Value); err != nil {
		d.fail(path, n, "%s", err.Error())
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func structFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		m[tag] = i
	}
	return m
}

// suggest names the closest known field when the unknown one looks like a typo.
func suggest(name string, fields map[string]int) string {
	best, bestD := "", 3
	for f := range fields {
		if dd := editDistance(name, f); dd < bestD || (dd == bestD && f < best) {
			best, bestD = f, dd
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ParseDuration accepts Go durations ("1.5s", "200ms", "2m") and whole days
// ("30d"); see syntax.Duration.
func ParseDuration(s string) (time.Duration, error) { return syntax.Duration(s) }

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
}

// ParseByteSize accepts a number of bytes or a number with a unit ("64MiB", "1GB").
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	num := s
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			mult, num = u.mult, strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size (use e.g. 512KiB, 64MiB, 1GiB)", s)
	}
	v := f * float64(mult)
	if v > 1<<62 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(v), nil
}

// String formats a size with a binary unit.
func (b ByteSize) String() string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", b>>30)
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return fmt.Sprintf("%dB", int64(b))
}

// String formats the duration the way Go does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalYAML writes the size with its unit.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }
