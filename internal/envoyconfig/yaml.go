package envoyconfig

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// fastYAML renders m to the same bytes as toYAML, without the detour through
// protojson text, a JSON tree and yaml.v2's reflection-driven emitter: it walks
// the message with protoreflect, producing the values protojson would
// (UseProtoNames, well-known types, 64-bit integers as strings, ...), and writes
// block YAML as yaml.v2 writes the sorted tree. Scalars whose rendering is not
// certainly plain, quoted-on-one-line or a simple literal block are handed to
// yaml.v2 itself in a small document that puts them at the same column and
// indentation, and spliced in. Whatever it cannot reproduce exactly (extensions,
// MessageSets, map keys yaml.v2 would not sort deterministically or would write
// as complex keys, a root that is not a mapping) is an error, never a different
// rendering, so the caller can fall back to toYAML.
func fastYAML(m proto.Message) ([]byte, error) {
	if m == nil {
		return []byte("{}\n"), nil
	}
	e := yencPool.Get().(*yenc)
	defer e.release()
	if err := e.message(m.ProtoReflect(), ctx{kind: ctxRoot}); err != nil {
		return nil, err
	}
	if err := proto.CheckInitialized(m); err != nil {
		return nil, err
	}
	return bytes.Clone(e.buf), nil
}

var errNotMapping = errors.New("fastYAML: the root is not a mapping")

var yencPool = sync.Pool{New: func() any { return &yenc{buf: make([]byte, 0, 16<<10)} }}

type yenc struct {
	buf     []byte
	entries []entry
}

func (e *yenc) release() {
	if cap(e.buf) > 1<<20 {
		return
	}
	e.buf = e.buf[:0]
	clear(e.entries)
	e.entries = e.entries[:0]
	yencPool.Put(e)
}

// entry is one populated field of the message being written, or its "@type".
type entry struct {
	fd   protoreflect.FieldDescriptor // nil for "@type"
	v    protoreflect.Value
	rank int32
}

// ctx says where the node being written starts: at the root, as the value of a
// key (after "key:", in a mapping indented by indent), or as a sequence item
// (after "-", in a sequence indented by indent). col is the column right after
// the ':' or '-'.
type ctx struct {
	kind   int
	indent int
	col    int
}

const (
	ctxRoot = iota
	ctxValue
	ctxItem
)

const spaces = "                                                                                                                                "

func (e *yenc) indent(n int) {
	for n > len(spaces) {
		e.buf = append(e.buf, spaces...)
		n -= len(spaces)
	}
	e.buf = append(e.buf, spaces[:n]...)
}

// --- structure -------------------------------------------------------------

// openMapping starts a non-empty block mapping in c and returns the indentation
// of its keys. The first key is to be written right away; later ones after
// e.indent(childIndent).
func (e *yenc) openMapping(c ctx) int {
	switch c.kind {
	case ctxValue:
		e.buf = append(e.buf, '\n')
		e.indent(c.indent + 2)
		return c.indent + 2
	case ctxItem:
		e.buf = append(e.buf, ' ')
		return c.indent + 2
	}
	return 0
}

// key writes a key (already rendered, width runes wide) at the start of a line
// of a mapping indented by ind, first telling whether the indentation is
// already written, and returns the context of its value.
func (e *yenc) key(ind int, first bool, text string, width int) ctx {
	if !first {
		e.indent(ind)
	}
	e.buf = append(e.buf, text...)
	e.buf = append(e.buf, ':')
	return ctx{kind: ctxValue, indent: ind, col: ind + width + 1}
}

// openSequence starts a non-empty block sequence in c and returns its indentation.
func (e *yenc) openSequence(c ctx) (int, error) {
	switch c.kind {
	case ctxValue:
		e.buf = append(e.buf, '\n')
		e.indent(c.indent)
		return c.indent, nil
	case ctxItem:
		e.buf = append(e.buf, ' ')
		return c.indent + 2, nil
	}
	return 0, errNotMapping
}

// item writes the '-' of an item of a sequence indented by ind.
func (e *yenc) item(ind int, first bool) ctx {
	if !first {
		e.indent(ind)
	}
	e.buf = append(e.buf, '-')
	return ctx{kind: ctxItem, indent: ind, col: ind + 1}
}

func (e *yenc) emptyMapping(c ctx) {
	if c.kind == ctxRoot {
		e.buf = append(e.buf, "{}\n"...)
		return
	}
	e.buf = append(e.buf, " {}\n"...)
}

func (e *yenc) emptySequence(c ctx) error {
	if c.kind == ctxRoot {
		return errNotMapping
	}
	e.buf = append(e.buf, " []\n"...)
	return nil
}

// raw writes a scalar whose text needs no folding, quoting or escaping decisions
// (numbers, booleans, null, quoted decimal integers).
func (e *yenc) raw(c ctx, text string) error {
	if c.kind == ctxRoot {
		return errNotMapping
	}
	e.buf = append(e.buf, ' ')
	e.buf = append(e.buf, text...)
	e.buf = append(e.buf, '\n')
	return nil
}

// --- messages --------------------------------------------------------------

const (
	wktNone = iota
	wktAny
	wktTimestamp
	wktDuration
	wktWrapper
	wktStruct
	wktListValue
	wktValue
	wktFieldMask
)

// msgInfo is what fastYAML needs of a message type, computed once.
type msgInfo struct {
	err      error
	wkt      int
	rank     []int32 // by field index: position of its name among the sorted keys
	keys     []string
	widths   []int
	typeRank int32 // position of "@type" among them
}

var msgInfos sync.Map // protoreflect.MessageDescriptor -> *msgInfo

func infoFor(md protoreflect.MessageDescriptor) *msgInfo {
	if v, ok := msgInfos.Load(md); ok {
		return v.(*msgInfo)
	}
	v, _ := msgInfos.LoadOrStore(md, newMsgInfo(md))
	return v.(*msgInfo)
}

func newMsgInfo(md protoreflect.MessageDescriptor) *msgInfo {
	info := &msgInfo{}
	if md.FullName().Parent() == "google.protobuf" {
		switch md.Name() {
		case "Any":
			info.wkt = wktAny
		case "Timestamp":
			info.wkt = wktTimestamp
		case "Duration":
			info.wkt = wktDuration
		case "BoolValue", "Int32Value", "Int64Value", "UInt32Value", "UInt64Value",
			"FloatValue", "DoubleValue", "StringValue", "BytesValue":
			info.wkt = wktWrapper
		case "Struct":
			info.wkt = wktStruct
		case "ListValue":
			info.wkt = wktListValue
		case "Value":
			info.wkt = wktValue
		case "FieldMask":
			info.wkt = wktFieldMask
		}
	}
	if opts, ok := md.Options().(*descriptorpb.MessageOptions); ok && opts.GetMessageSetWireFormat() {
		info.err = fmt.Errorf("fastYAML: %s is a MessageSet", md.FullName())
		return info
	}
	fields := md.Fields()
	n := fields.Len()
	names := make([]string, n+1)
	for i := range n {
		names[i] = fields.Get(i).TextName()
	}
	names[n] = "@type"
	order := make([]int, n+1)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return yamlKeyLess(names[order[a]], names[order[b]]) })
	sorted := make([]string, n+1)
	for i, o := range order {
		sorted[i] = names[o]
	}
	if !strictlyOrdered(sorted) {
		info.err = fmt.Errorf("fastYAML: yaml.v2 does not order the field names of %s consistently", md.FullName())
		return info
	}
	info.rank = make([]int32, n+1)
	for pos, o := range order {
		info.rank[o] = int32(pos)
	}
	info.typeRank = info.rank[n]
	info.keys = make([]string, n)
	info.widths = make([]int, n)
	for i := range n {
		k, w, err := renderKey(names[i])
		if err != nil {
			info.err = err
			return info
		}
		info.keys[i], info.widths[i] = k, w
	}
	return info
}

const typeKey = "'@type'" // how yaml.v2 writes the key "@type"

func (e *yenc) message(m protoreflect.Message, c ctx) error {
	info := infoFor(m.Descriptor())
	if info.err != nil {
		return info.err
	}
	switch info.wkt {
	case wktAny:
		return e.any(m, c)
	case wktTimestamp:
		s, err := timestampString(m)
		if err != nil {
			return err
		}
		return e.str(c, s)
	case wktDuration:
		s, err := durationString(m)
		if err != nil {
			return err
		}
		return e.str(c, s)
	case wktWrapper:
		fd := m.Descriptor().Fields().ByNumber(1)
		return e.singular(fd, m.Get(fd), c)
	case wktStruct:
		fd := m.Descriptor().Fields().ByNumber(1)
		return e.mapField(m.Get(fd).Map(), fd, c)
	case wktListValue:
		fd := m.Descriptor().Fields().ByNumber(1)
		return e.list(m.Get(fd).List(), fd, c)
	case wktValue:
		od := m.Descriptor().Oneofs().ByName("kind")
		fd := m.WhichOneof(od)
		if fd == nil {
			return errors.New("fastYAML: google.protobuf.Value: none of the oneof fields is set")
		}
		v := m.Get(fd)
		if fd.Number() == 2 { // number_value
			if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("fastYAML: google.protobuf.Value.number_value: invalid %v value", f)
			}
		}
		return e.singular(fd, v, c)
	case wktFieldMask:
		s, err := fieldMaskString(m)
		if err != nil {
			return err
		}
		return e.str(c, s)
	}
	return e.fields(m, info, "", c)
}

// fields writes a message as the mapping of its populated fields, plus "@type"
// when it is the content of an Any.
func (e *yenc) fields(m protoreflect.Message, info *msgInfo, typeURL string, c ctx) error {
	start := len(e.entries)
	defer func() {
		clear(e.entries[start:])
		e.entries = e.entries[:start]
	}()
	if typeURL != "" {
		e.entries = append(e.entries, entry{v: protoreflect.ValueOfString(typeURL), rank: info.typeRank})
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.IsExtension() {
			err = fmt.Errorf("fastYAML: extension field %s", fd.FullName())
			return false
		}
		e.entries = append(e.entries, entry{fd: fd, v: v, rank: info.rank[fd.Index()]})
		return true
	})
	if err != nil {
		return err
	}
	end := len(e.entries)
	if start == end {
		e.emptyMapping(c)
		return nil
	}
	// Insertion sort by rank: messages have few populated fields.
	es := e.entries[start:end]
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].rank < es[j-1].rank; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
	ind := e.openMapping(c)
	for i := start; i < end; i++ {
		en := e.entries[i]
		if en.fd == nil {
			vc := e.key(ind, i == start, typeKey, len(typeKey))
			if err := e.str(vc, en.v.String()); err != nil {
				return err
			}
			continue
		}
		idx := en.fd.Index()
		vc := e.key(ind, i == start, info.keys[idx], info.widths[idx])
		if err := e.value(en.fd, en.v, vc); err != nil {
			return err
		}
	}
	return nil
}

func (e *yenc) value(fd protoreflect.FieldDescriptor, v protoreflect.Value, c ctx) error {
	switch {
	case fd.IsList():
		return e.list(v.List(), fd, c)
	case fd.IsMap():
		return e.mapField(v.Map(), fd, c)
	}
	return e.singular(fd, v, c)
}

func (e *yenc) list(l protoreflect.List, fd protoreflect.FieldDescriptor, c ctx) error {
	n := l.Len()
	if n == 0 {
		return e.emptySequence(c)
	}
	ind, err := e.openSequence(c)
	if err != nil {
		return err
	}
	for i := range n {
		if err := e.singular(fd, l.Get(i), e.item(ind, i == 0)); err != nil {
			return err
		}
	}
	return nil
}

type mapItem struct {
	key string
	v   protoreflect.Value
}

func (e *yenc) mapField(mp protoreflect.Map, fd protoreflect.FieldDescriptor, c ctx) error {
	if mp.Len() == 0 {
		e.emptyMapping(c)
		return nil
	}
	items := make([]mapItem, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		items = append(items, mapItem{k.String(), v})
		return true
	})
	digits := false
	for _, it := range items {
		if !utf8.ValidString(it.key) {
			return fmt.Errorf("fastYAML: %s: invalid UTF-8 in a map key", fd.FullName())
		}
		if !digits && strings.ContainsFunc(it.key, unicode.IsDigit) {
			digits = true
		}
	}
	sort.Slice(items, func(i, j int) bool { return yamlKeyLess(items[i].key, items[j].key) })
	if digits {
		// yaml.v2's key order is not a total order on every set of keys with
		// digits; then its output depends on map iteration order, and there is
		// nothing to match.
		if len(items) > 512 {
			return errors.New("fastYAML: too many map keys with digits to check their order")
		}
		keys := make([]string, len(items))
		for i, it := range items {
			keys[i] = it.key
		}
		if !strictlyOrdered(keys) {
			return errors.New("fastYAML: yaml.v2 does not order these map keys consistently")
		}
	}
	ind := e.openMapping(c)
	vfd := fd.MapValue()
	for i, it := range items {
		text, width, err := renderKey(it.key)
		if err != nil {
			return err
		}
		if err := e.singular(vfd, it.v, e.key(ind, i == 0, text, width)); err != nil {
			return err
		}
	}
	return nil
}

func (e *yenc) singular(fd protoreflect.FieldDescriptor, v protoreflect.Value, c ctx) error {
	if c.kind == ctxRoot && fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
		return errNotMapping
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if v.Bool() {
			return e.raw(c, "true")
		}
		return e.raw(c, "false")
	case protoreflect.StringKind:
		s := v.String()
		if !utf8.ValidString(s) {
			return fmt.Errorf("fastYAML: field %s contains invalid UTF-8", fd.FullName())
		}
		return e.str(c, s)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return e.raw(c, strconv.FormatInt(v.Int(), 10))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return e.raw(c, strconv.FormatUint(v.Uint(), 10))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		// protojson writes them as strings, which YAML would read as integers
		// unless double-quoted.
		return e.raw(c, `"`+strconv.FormatInt(v.Int(), 10)+`"`)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return e.raw(c, `"`+strconv.FormatUint(v.Uint(), 10)+`"`)
	case protoreflect.FloatKind:
		return e.float(c, v.Float(), 32)
	case protoreflect.DoubleKind:
		return e.float(c, v.Float(), 64)
	case protoreflect.BytesKind:
		return e.str(c, base64.StdEncoding.EncodeToString(v.Bytes()))
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return e.raw(c, "null")
		}
		if d := fd.Enum().Values().ByNumber(v.Enum()); d != nil {
			return e.str(c, string(d.Name()))
		}
		return e.raw(c, strconv.FormatInt(int64(v.Enum()), 10))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return e.message(v.Message(), c)
	}
	return fmt.Errorf("fastYAML: %s has unknown kind %v", fd.FullName(), fd.Kind())
}

// float writes what yaml.v2 makes of protojson's text for f once
// encoding/json has read it as a json.Number: an int64 if it parses as one,
// otherwise a float64 in 'g' format; NaN and the infinities are strings.
func (e *yenc) float(c ctx, f float64, bitSize int) error {
	switch {
	case math.IsNaN(f):
		return e.str(c, "NaN")
	case math.IsInf(f, 1):
		return e.str(c, "Infinity")
	case math.IsInf(f, -1):
		return e.str(c, "-Infinity")
	}
	var tmp [32]byte
	text := string(appendProtoJSONFloat(tmp[:0], f, bitSize))
	if i, err := strconv.ParseInt(text, 10, 64); err == nil {
		return e.raw(c, strconv.FormatInt(i, 10))
	}
	g, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(g, 0) || math.IsNaN(g) {
		return fmt.Errorf("fastYAML: unexpected float text %q", text)
	}
	return e.raw(c, strconv.FormatFloat(g, 'g', -1, 64))
}

// appendProtoJSONFloat is protojson's float format (internal/encoding/json).
func appendProtoJSONFloat(out []byte, n float64, bitSize int) []byte {
	format := byte('f')
	if abs := math.Abs(n); abs != 0 {
		if bitSize == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bitSize == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	out = strconv.AppendFloat(out, n, format, -1, bitSize)
	if format == 'e' {
		n := len(out)
		if n >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
			out[n-2] = out[n-1]
			out = out[:n-1]
		}
	}
	return out
}

func (e *yenc) any(m protoreflect.Message, c ctx) error {
	fds := m.Descriptor().Fields()
	fdType, fdValue := fds.ByNumber(1), fds.ByNumber(2)
	if !m.Has(fdType) {
		if !m.Has(fdValue) {
			e.emptyMapping(c)
			return nil
		}
		return errors.New("fastYAML: google.protobuf.Any: type_url is not set")
	}
	typeURL := m.Get(fdType).String()
	if !utf8.ValidString(typeURL) {
		return errors.New("fastYAML: google.protobuf.Any: invalid UTF-8 in type_url")
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return fmt.Errorf("fastYAML: google.protobuf.Any: unable to resolve %q: %v", typeURL, err)
	}
	em := mt.New()
	err = proto.UnmarshalOptions{AllowPartial: true, Resolver: protoregistry.GlobalTypes}.Unmarshal(m.Get(fdValue).Bytes(), em.Interface())
	if err != nil {
		return fmt.Errorf("fastYAML: google.protobuf.Any: unable to unmarshal %q: %v", typeURL, err)
	}
	info := infoFor(em.Descriptor())
	if info.err != nil {
		return info.err
	}
	if info.wkt == wktNone {
		return e.fields(em, info, typeURL, c)
	}
	// A well-known type is {"@type": ..., "value": <its JSON>}.
	ind := e.openMapping(c)
	if err := e.str(e.key(ind, true, typeKey, len(typeKey)), typeURL); err != nil {
		return err
	}
	return e.message(em, e.key(ind, false, "value", len("value")))
}

func durationString(m protoreflect.Message) (string, error) {
	fds := m.Descriptor().Fields()
	secs, nanos := m.Get(fds.ByNumber(1)).Int(), m.Get(fds.ByNumber(2)).Int()
	const maxSecs, maxNanos = 315576000000, 999999999
	if secs < -maxSecs || secs > maxSecs {
		return "", fmt.Errorf("fastYAML: google.protobuf.Duration: seconds out of range %v", secs)
	}
	if nanos < -maxNanos || nanos > maxNanos {
		return "", fmt.Errorf("fastYAML: google.protobuf.Duration: nanos out of range %v", nanos)
	}
	if (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
		return "", errors.New("fastYAML: google.protobuf.Duration: signs of seconds and nanos do not match")
	}
	var b []byte
	if secs < 0 || nanos < 0 {
		b = append(b, '-')
		secs, nanos = -secs, -nanos
	}
	b = strconv.AppendInt(b, secs, 10)
	b = appendFraction(b, nanos)
	return string(append(b, 's')), nil
}

// appendFraction writes nanos as protojson does: none, 3, 6 or 9 digits.
func appendFraction(b []byte, nanos int64) []byte {
	if nanos == 0 {
		return b
	}
	digits := 9
	for digits > 3 && nanos%1000 == 0 {
		nanos /= 1000
		digits -= 3
	}
	b = append(b, '.')
	s := strconv.FormatInt(nanos, 10)
	for range digits - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

func timestampString(m protoreflect.Message) (string, error) {
	fds := m.Descriptor().Fields()
	secs, nanos := m.Get(fds.ByNumber(1)).Int(), m.Get(fds.ByNumber(2)).Int()
	if secs < -62135596800 || secs > 253402300799 {
		return "", fmt.Errorf("fastYAML: google.protobuf.Timestamp: seconds out of range %v", secs)
	}
	if nanos < 0 || nanos > 999999999 {
		return "", fmt.Errorf("fastYAML: google.protobuf.Timestamp: nanos out of range %v", nanos)
	}
	b := time.Unix(secs, 0).UTC().AppendFormat(nil, "2006-01-02T15:04:05")
	b = appendFraction(b, nanos)
	return string(append(b, 'Z')), nil
}

func fieldMaskString(m protoreflect.Message) (string, error) {
	list := m.Get(m.Descriptor().Fields().ByNumber(1)).List()
	var b strings.Builder
	for i := range list.Len() {
		s := list.Get(i).String()
		if !protoreflect.FullName(s).IsValid() {
			return "", fmt.Errorf("fastYAML: google.protobuf.FieldMask contains invalid path: %q", s)
		}
		cc := jsonCamelCase(s)
		if s != jsonSnakeCase(cc) {
			return "", fmt.Errorf("fastYAML: google.protobuf.FieldMask contains irreversible value %q", s)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(cc)
	}
	return b.String(), nil
}

// jsonCamelCase and jsonSnakeCase are protobuf's internal/strs conversions.
func jsonCamelCase(s string) string {
	var b []byte
	var wasUnderscore bool
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' {
			if wasUnderscore && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			b = append(b, c)
		}
		wasUnderscore = c == '_'
	}
	return string(b)
}

func jsonSnakeCase(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			b = append(b, '_')
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}

// --- scalars ---------------------------------------------------------------

// yaml.v2 folds plain and quoted scalars at spaces past this column.
const bestWidth = 80

// str writes the string s in c as yaml.v2 would.
func (e *yenc) str(c ctx, s string) error {
	if c.kind == ctxRoot {
		return errNotMapping
	}
	if text, ok := fastScalar(s, c.col+1); ok {
		e.buf = append(e.buf, ' ')
		e.buf = append(e.buf, text...)
		e.buf = append(e.buf, '\n')
		return nil
	}
	if strings.IndexByte(s, '\n') >= 0 && e.literal(s, c) {
		return nil
	}
	return e.strByYAML(s, c)
}

// fastScalar renders s, starting at column col, when it is printable ASCII on
// one line that yaml.v2 writes as one line: plain, single- or double-quoted.
// ok is false when s needs yaml.v2 itself.
func fastScalar(s string, col int) (text string, ok bool) {
	if !printableASCII(s) {
		return "", false
	}
	plain := resolvesToString(s) && !isBase60Float(s)
	if plain && plainAllowed(s) {
		if !foldsAt(s, col) {
			return s, true
		}
		return "", false
	}
	if plain { // yaml.v2 asked for plain, the emitter falls back to single quotes
		if strings.IndexByte(s, '\'') >= 0 || strings.IndexByte(s, ' ') >= 0 {
			if foldsQuoted(s, col, '\'') {
				return "", false
			}
			return "'" + strings.ReplaceAll(s, "'", "''") + "'", true
		}
		return "'" + s + "'", true
	}
	if strings.IndexByte(s, '"') >= 0 || strings.IndexByte(s, '\\') >= 0 || strings.IndexByte(s, ' ') >= 0 {
		if foldsQuoted(s, col, '"') {
			return "", false
		}
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
		return `"` + r.Replace(s) + `"`, true
	}
	return `"` + s + `"`, true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// plainAllowed is yaml.v2's block_plain_allowed for printable ASCII on one line.
func plainAllowed(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	if strings.HasPrefix(s, "---") || strings.HasPrefix(s, "...") {
		return false
	}
	followedByBlank := func(i int) bool { return i+1 >= len(s) || s[i+1] == ' ' || s[i+1] == '\t' }
	switch s[0] {
	case '#', ',', '[', ']', '{', '}', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`':
		return false
	case '?', ':', '-':
		if followedByBlank(0) {
			return false
		}
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case ':':
			if followedByBlank(i) {
				return false
			}
		case '#':
			if s[i-1] == ' ' || s[i-1] == '\t' {
				return false
			}
		}
	}
	return true
}

// foldsAt tells whether yaml.v2 would break the plain scalar s, starting at
// column col, at one of its spaces.
func foldsAt(s string, col int) bool {
	if col+len(s) <= bestWidth+1 || strings.IndexByte(s, ' ') < 0 {
		return false
	}
	spaces := false
	for i := 0; i < len(s); i++ {
		column := col + i
		if s[i] == ' ' {
			if !spaces && column > bestWidth && (i+1 >= len(s) || s[i+1] != ' ') {
				return true
			}
			spaces = true
		} else {
			spaces = false
		}
	}
	return false
}

// foldsQuoted tells whether yaml.v2 would break s, single- or double-quoted from
// column col (where the opening quote goes), at one of its spaces.
func foldsQuoted(s string, col int, quote byte) bool {
	if strings.IndexByte(s, ' ') < 0 {
		return false
	}
	column := col + 1
	spaces := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == ' ' {
			if !spaces && column > bestWidth && i > 0 && i < len(s)-1 && (quote == '"' || s[i+1] != ' ') {
				return true
			}
			spaces = true
			column++
			continue
		}
		spaces = false
		column++
		if ch == quote || quote == '"' && ch == '\\' {
			column++
		}
	}
	return false
}

// literal writes s, which has a line break, as a literal block when it is
// printable ASCII that yaml.v2 writes that way, and tells whether it did.
func (e *yenc) literal(s string, c ctx) bool {
	prevSpace := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\n':
			if prevSpace { // space before a break: double-quoted
				return false
			}
			prevSpace = false
		case ch < 0x20 || ch > 0x7e:
			return false
		default:
			prevSpace = ch == ' '
		}
	}
	if prevSpace { // trailing space
		return false
	}
	e.buf = append(e.buf, " |"...)
	if s[0] == ' ' || s[0] == '\n' {
		e.buf = append(e.buf, '2')
	}
	switch {
	case s[len(s)-1] != '\n':
		e.buf = append(e.buf, '-')
	case len(s) == 1 || s[len(s)-2] == '\n':
		e.buf = append(e.buf, '+')
	}
	e.buf = append(e.buf, '\n')
	ind := c.indent + 2
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		line := s
		if i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if line != "" {
			e.indent(ind)
			e.buf = append(e.buf, line...)
		}
		if i >= 0 || line != "" {
			e.buf = append(e.buf, '\n')
		}
	}
	return true
}

// strByYAML has yaml.v2 write s in a document where it starts at the same
// column with the same indentation as in c, and splices it in.
func (e *yenc) strByYAML(s string, c ctx) error {
	var doc any
	var prefix []byte
	var depth int
	switch c.kind {
	case ctxValue:
		// A key as wide as the real one; past 128 columns (yaml.v2's limit
		// for a simple key, in bytes) one that escapes: "\x01" is 4 columns.
		w := c.col - c.indent - 1
		var k, text string
		switch {
		case w >= 1 && w <= 128:
			k = strings.Repeat("k", w)
			text = k
		case w > 128 && (w-2)/4+(w-2)%4 <= 128:
			k = strings.Repeat("\x01", (w-2)/4) + strings.Repeat("k", (w-2)%4)
			text = `"` + strings.Repeat(`\x01`, (w-2)/4) + strings.Repeat("k", (w-2)%4) + `"`
		default:
			return fmt.Errorf("fastYAML: key too wide (%d columns) to reproduce a value's column", w)
		}
		doc = yaml.MapSlice{{Key: k, Value: s}}
		prefix = append([]byte(text), ':')
		depth = c.indent / 2
	case ctxItem:
		doc = yaml.MapSlice{{Key: "k", Value: []any{s}}}
		prefix = []byte("k:\n")
		prefix = append(prefix, strings.Repeat(" ", c.indent)...)
		prefix = append(prefix, '-')
		depth = c.indent / 2
	default:
		return errNotMapping
	}
	if c.indent%2 != 0 {
		return errors.New("fastYAML: odd indentation")
	}
	ind := strings.Repeat(" ", c.indent)
	prefix = append([]byte(ind), prefix...)
	for d := depth - 1; d >= 0; d-- {
		doc = yaml.MapSlice{{Key: "k", Value: doc}}
		prefix = append([]byte(strings.Repeat(" ", 2*d)+"k:\n"), prefix...)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(out, prefix) || len(out) == len(prefix) {
		return fmt.Errorf("fastYAML: unexpected yaml.v2 output for %q", s)
	}
	if out[len(out)-1] != '\n' {
		// A literal block ending in another line break (U+2028, U+0085, \r)
		// leaves the next key on the same line.
		return fmt.Errorf("fastYAML: scalar %q does not end its line", s)
	}
	e.buf = append(e.buf, out[len(prefix):]...)
	return nil
}

// renderKey returns the text yaml.v2 writes for the mapping key s and its
// width in columns.
func renderKey(s string) (string, int, error) {
	if len(s) > 128 || !utf8.ValidString(s) {
		return "", 0, fmt.Errorf("fastYAML: key %q is not a simple key", s)
	}
	if printableASCII(s) {
		plain := resolvesToString(s) && !isBase60Float(s)
		switch {
		case plain && plainAllowed(s):
			return s, len(s), nil
		case plain:
			t := "'" + strings.ReplaceAll(s, "'", "''") + "'"
			return t, len(t), nil
		default:
			t := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
			return t, len(t), nil
		}
	}
	out, err := yaml.Marshal(yaml.MapSlice{{Key: s, Value: nil}})
	if err != nil {
		return "", 0, err
	}
	text, ok := bytes.CutSuffix(out, []byte(": null\n"))
	if !ok || bytes.HasPrefix(out, []byte("? ")) || bytes.IndexByte(text, '\n') >= 0 {
		return "", 0, fmt.Errorf("fastYAML: key %q is not a simple key", s)
	}
	return string(text), utf8.RuneCount(text), nil
}

// --- yaml.v2's rules -------------------------------------------------------

// resolvesToString tells whether yaml.v2's resolve("", s) gives !!str, that is
// whether s can be written plain without being read back as something else.
// It follows go.yaml.in/yaml/v2's resolve.go.
func resolvesToString(s string) bool {
	if s == "" {
		return false // null
	}
	c := s[0]
	var hint byte
	switch {
	case c == '+' || c == '-':
		hint = 'S'
	case '0' <= c && c <= '9':
		hint = 'D'
	case c == '.':
		hint = '.'
	case strings.IndexByte("yYnNtTfFoO~", c) >= 0:
		hint = 'M'
	default:
		return true
	}
	if _, ok := yamlResolveMap[s]; ok {
		return false
	}
	switch hint {
	case 'M':
		return true
	case '.':
		_, err := strconv.ParseFloat(s, 64)
		return err != nil
	}
	// 'D' or 'S': int, float or timestamp. Characters that none of them can
	// hold settle it without parsing.
	if strings.Count(s, ".") > 1 {
		return true
	}
	for i := 0; i < len(s); i++ {
		if !numberish[s[i]] {
			return true
		}
	}
	if _, ok := parseYAMLTimestamp(s); ok {
		return false
	}
	plain := strings.ReplaceAll(s, "_", "")
	if _, err := strconv.ParseInt(plain, 0, 64); err == nil {
		return false
	}
	if _, err := strconv.ParseUint(plain, 0, 64); err == nil {
		return false
	}
	if yamlStyleFloat.MatchString(plain) {
		if _, err := strconv.ParseFloat(plain, 64); err == nil {
			return false
		}
	}
	if strings.HasPrefix(plain, "0b") {
		if _, err := strconv.ParseInt(plain[2:], 2, 64); err == nil {
			return false
		}
		if _, err := strconv.ParseUint(plain[2:], 2, 64); err == nil {
			return false
		}
	} else if strings.HasPrefix(plain, "-0b") {
		if _, err := strconv.ParseInt("-"+plain[3:], 2, 64); err == nil {
			return false
		}
	}
	return true
}

// numberish holds every byte that a YAML 1.1 int, float or timestamp (as
// yaml.v2 parses them) can contain.
var numberish = func() (t [256]bool) {
	for _, c := range "0123456789abcdefABCDEFxXoObB_+-.,:tTzZ " { // ',' separates fractional seconds too
		t[c] = true
	}
	return t
}()

var yamlResolveMap = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, s := range []string{
		"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
		"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
		"", "~", "null", "Null", "NULL",
		".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
		"<<",
	} {
		m[s] = struct{}{}
	}
	return m
}()

var yamlStyleFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

var yamlTimestampFormats = []string{
	"2006-1-2T15:4:5.999999999Z07:00",
	"2006-1-2t15:4:5.999999999Z07:00",
	"2006-1-2 15:4:5.999999999",
	"2006-1-2",
}

func parseYAMLTimestamp(s string) (time.Time, bool) {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; c < '0' || c > '9' {
			break
		}
	}
	if i != 4 || i == len(s) || s[i] != '-' {
		return time.Time{}, false
	}
	for _, format := range yamlTimestampFormats {
		if t, err := time.Parse(format, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

var base60float = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`)

func isBase60Float(s string) bool {
	if s == "" {
		return false
	}
	c := s[0]
	if !(c == '+' || c == '-' || c >= '0' && c <= '9') || strings.IndexByte(s, ':') < 0 {
		return false
	}
	return base60float.MatchString(s)
}

// yamlKeyLess is yaml.v2's order of string keys (sorter.go).
func yamlKeyLess(a, b string) bool {
	ar, br := []rune(a), []rune(b)
	for i := 0; i < len(ar) && i < len(br); i++ {
		if ar[i] == br[i] {
			continue
		}
		al := unicode.IsLetter(ar[i])
		bl := unicode.IsLetter(br[i])
		if al && bl {
			return ar[i] < br[i]
		}
		if al || bl {
			return bl
		}
		var ai, bi int
		var an, bn int64
		if ar[i] == '0' || br[i] == '0' {
			for j := i - 1; j >= 0 && unicode.IsDigit(ar[j]); j-- {
				if ar[j] != '0' {
					an = 1
					bn = 1
					break
				}
			}
		}
		for ai = i; ai < len(ar) && unicode.IsDigit(ar[ai]); ai++ {
			an = an*10 + int64(ar[ai]-'0')
		}
		for bi = i; bi < len(br) && unicode.IsDigit(br[bi]); bi++ {
			bn = bn*10 + int64(br[bi]-'0')
		}
		if an != bn {
			return an < bn
		}
		if ai != bi {
			return ai < bi
		}
		return ar[i] < br[i]
	}
	return len(ar) < len(br)
}

// strictlyOrdered tells whether yamlKeyLess orders sorted strictly, pair by
// pair, so that any sort of these keys gives this order.
func strictlyOrdered(sorted []string) bool {
	for i := range sorted {
		for j := i + 1; j < len(sorted); j++ {
			if !yamlKeyLess(sorted[i], sorted[j]) || yamlKeyLess(sorted[j], sorted[i]) {
				return false
			}
		}
	}
	return true
}
