// Reads the pickle of a torch.save file (its data.pkl) symbolically, without creating any object the pickle names,
// and accepts it only if it is a plain state dict: a dict or collections.OrderedDict from strings to tensors. In: the
// pickle bytes. Out: tensor name → (storage key, storage dtype, offset, shape, stride), or a BadInputException.
//
// Why not just hand the file to TorchSharp.PyBridge: its unpickler (Razorvine.Pickle) turns any class it does not
// know into a placeholder and fails later with a cast or "expected zero arguments" error, it never checks a tensor
// against the bytes of its storage, and it reads views with an offset or strides wrongly. So every name a GLOBAL or
// STACK_GLOBAL brings in is checked against a short allow-list first, a REDUCE may only call OrderedDict or
// torch._utils._rebuild_tensor_v2, opcodes that build arbitrary objects (INST, OBJ, NEWOBJ, EXT*) are refused, and the
// loader then checks each tensor against its storage entry before PyBridge reads anything.
using System.Buffers.Binary;
using System.Text;

namespace VlaBias.Weights;

internal sealed record PickledTensor(string Name, SafeDType DType, string StorageKey, long StorageNumel, long Offset, long[] Shape, long[] Stride);

internal static class PickleScanner
{
    /// <summary>Storage classes torch.save names, with the dtype each holds.</summary>
    public static readonly IReadOnlyDictionary<string, SafeDType> Storages = new Dictionary<string, SafeDType>
    {
        ["FloatStorage"] = SafeDType.F32, ["HalfStorage"] = SafeDType.F16, ["BFloat16Storage"] = SafeDType.BF16,
        ["DoubleStorage"] = SafeDType.F64, ["LongStorage"] = SafeDType.I64, ["IntStorage"] = SafeDType.I32,
        ["ShortStorage"] = SafeDType.I16, ["CharStorage"] = SafeDType.I8, ["ByteStorage"] = SafeDType.U8,
        ["BoolStorage"] = SafeDType.BOOL,
    };

    private const string OrderedDict = "collections.OrderedDict", RebuildTensor = "torch._utils._rebuild_tensor_v2";

    /// <summary>Every class or function a plain state dict's pickle may name.</summary>
    public static readonly string AllowList = $"{OrderedDict}, {RebuildTensor}, " + string.Join(", ", Storages.Keys.Select(s => "torch." + s));

    private const int MaxDepth = 10_000_000;

    private sealed class Mark;
    private sealed record Global(string Module, string Name) { public string Full => $"{Module}.{Name}"; }
    private sealed record Storage(SafeDType DType, string Key, long Numel);
    private sealed record TensorRef(Storage Storage, long Offset, long[] Shape, long[] Stride);
    private sealed class PyDict { public readonly List<(object? Key, object? Value)> Items = []; }
    private sealed class PyList { public readonly List<object?> Items = []; }
    private sealed record PyTuple(object?[] Items);
    private sealed record PyBytes(int Length);

    private static readonly Mark TheMark = new();

    public static List<PickledTensor> Scan(string path, ReadOnlySpan<byte> pickle)
    {
        var stack = new List<object?>();
        var memo = new Dictionary<long, object?>();
        int pos = 0;
        BadInputException Bad(string message) => new($"{path}: {message}");
        ReadOnlySpan<byte> Take(ReadOnlySpan<byte> p, int n)
        {
            if (n < 0 || pos + n > p.Length) throw Bad("the pickle ends in the middle of an opcode (truncated file?)");
            var s = p.Slice(pos, n);
            pos += n;
            return s;
        }
        object? Pop()
        {
            if (stack.Count == 0) throw Bad($"the pickle pops an empty stack at byte {pos}");
            var v = stack[^1];
            stack.RemoveAt(stack.Count - 1);
            if (v is Mark) throw Bad($"the pickle uses a mark as a value at byte {pos}");
            return v;
        }
        List<object?> PopMark()
        {
            int m = stack.FindLastIndex(x => x is Mark);
            if (m < 0) throw Bad($"the pickle has no mark to pop to at byte {pos}");
            var items = stack.GetRange(m + 1, stack.Count - m - 1);
            stack.RemoveRange(m, stack.Count - m);
            return items;
        }
        void Push(object? v)
        {
            if (stack.Count >= MaxDepth) throw Bad("the pickle's stack grows beyond any state dict's");
            stack.Add(v);
        }
        string Utf8(ReadOnlySpan<byte> b)
        {
            try { return new UTF8Encoding(false, true).GetString(b); }
            catch (DecoderFallbackException) { throw Bad("the pickle holds a string that is not valid UTF-8"); }
        }
        string Line(ReadOnlySpan<byte> p)
        {
            int end = p[pos..].IndexOf((byte)'\n');
            if (end < 0) throw Bad("the pickle ends in the middle of a GLOBAL name");
            var s = Encoding.ASCII.GetString(p.Slice(pos, end));
            pos += end + 1;
            return s;
        }
        Global CheckGlobal(string module, string name)
        {
            string full = $"{module}.{name}";
            bool ok = full == OrderedDict || full == RebuildTensor || (module == "torch" && Storages.ContainsKey(name));
            if (!ok)
            {
                string hint = full == "torch._utils._rebuild_parameter"
                    ? " (the file holds nn.Parameter objects, not a state dict of tensors: save model.state_dict())"
                    : "";
                throw Bad($"the pickle names {ErrorText.Quote(full)}, which is not part of a plain state dict of tensors, so the file is refused " +
                          $"without running anything{hint}; accepted: {AllowList}");
            }
            return new Global(module, name);
        }
        long Int(object? v, string what) => v is long l ? l : throw Bad($"{what} is not an integer");

        while (true)
        {
            if (pos >= pickle.Length) throw Bad("the pickle ends without a STOP opcode (truncated file?)");
            byte op = pickle[pos++];
            switch (op)
            {
                case 0x80: Take(pickle, 1); break;                                      // PROTO
                case 0x95: Take(pickle, 8); break;                                      // FRAME
                case (byte)'(': Push(TheMark); break;                                   // MARK
                case (byte)'0': Pop(); break;                                           // POP
                case (byte)'1': PopMark(); break;                                       // POP_MARK
                case (byte)'2': { var v = Pop(); Push(v); Push(v); break; }            // DUP
                case (byte)'N': Push(null); break;                                      // NONE
                case 0x88: Push(true); break;                                           // NEWTRUE
                case 0x89: Push(false); break;                                          // NEWFALSE
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(pickle, 4))); break;   // BININT
                case (byte)'K': Push((long)Take(pickle, 1)[0]); break;                                          // BININT1
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(pickle, 2))); break;  // BININT2
                case 0x8a:                                                                                      // LONG1
                {
                    int n = Take(pickle, 1)[0];
                    var b = Take(pickle, n);
                    if (n > 8) throw Bad("the pickle holds an integer larger than 64 bits");
                    long v = 0;
                    for (int i = n - 1; i >= 0; i--) v = (v << 8) | b[i];
                    if (n > 0 && n < 8 && (b[n - 1] & 0x80) != 0) v -= 1L << (8 * n);
                    Push(v);
                    break;
                }
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(pickle, 8))); break;   // BINFLOAT
                case (byte)'X': Push(Utf8(Take(pickle, (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(Take(pickle, 4)), int.MaxValue)))); break; // BINUNICODE
                case 0x8c: Push(Utf8(Take(pickle, Take(pickle, 1)[0]))); break;                        // SHORT_BINUNICODE
                case 0x8d: Push(Utf8(Take(pickle, (int)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(Take(pickle, 8)), int.MaxValue)))); break; // BINUNICODE8
                case (byte)'U': Push(Encoding.Latin1.GetString(Take(pickle, Take(pickle, 1)[0]))); break; // SHORT_BINSTRING
                case (byte)'T': Push(Encoding.Latin1.GetString(Take(pickle, BinaryPrimitives.ReadInt32LittleEndian(Take(pickle, 4))))); break; // BINSTRING
                case (byte)'C': Push(new PyBytes(Take(pickle, Take(pickle, 1)[0]).Length)); break;      // SHORT_BINBYTES
                case (byte)'B': Push(new PyBytes(Take(pickle, BinaryPrimitives.ReadInt32LittleEndian(Take(pickle, 4))).Length)); break; // BINBYTES
                case (byte)')': Push(new PyTuple([])); break;                                           // EMPTY_TUPLE
                case (byte)'t': Push(new PyTuple(PopMark().ToArray())); break;                         // TUPLE
                case 0x85: { var a = Pop(); Push(new PyTuple([a])); break; }                           // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); Push(new PyTuple([a, b])); break; }        // TUPLE2
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new PyTuple([a, b, c])); break; } // TUPLE3
                case (byte)']': Push(new PyList()); break;                                              // EMPTY_LIST
                case (byte)'l': { var l = new PyList(); l.Items.AddRange(PopMark()); Push(l); break; } // LIST
                case (byte)'a': { var v = Pop(); (Peek() as PyList ?? throw Bad("APPEND to something that is not a list")).Items.Add(v); break; }
                case (byte)'e':                                                                         // APPENDS
                {
                    var items = PopMark();
                    (Peek() as PyList ?? throw Bad("APPENDS to something that is not a list")).Items.AddRange(items);
                    break;
                }
                case (byte)'}': Push(new PyDict()); break;                                              // EMPTY_DICT
                case (byte)'d':                                                                         // DICT
                {
                    var items = PopMark();
                    if (items.Count % 2 != 0) throw Bad("DICT with an odd number of items");
                    var d = new PyDict();
                    for (int i = 0; i < items.Count; i += 2) d.Items.Add((items[i], items[i + 1]));
                    Push(d);
                    break;
                }
                case (byte)'s':                                                                         // SETITEM
                {
                    var v = Pop(); var k = Pop();
                    (Peek() as PyDict ?? throw Bad("SETITEM on something that is not a dict")).Items.Add((k, v));
                    break;
                }
                case (byte)'u':                                                                         // SETITEMS
                {
                    var items = PopMark();
                    if (items.Count % 2 != 0) throw Bad("SETITEMS with an odd number of items");
                    var d = Peek() as PyDict ?? throw Bad("SETITEMS on something that is not a dict");
                    for (int i = 0; i < items.Count; i += 2) d.Items.Add((items[i], items[i + 1]));
                    break;
                }
                case (byte)'q': memo[Take(pickle, 1)[0]] = Peek(); break;                               // BINPUT
                case (byte)'r': memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(pickle, 4))] = Peek(); break; // LONG_BINPUT
                case 0x94: memo[memo.Count] = Peek(); break;                                            // MEMOIZE
                case (byte)'h': Push(Memo(Take(pickle, 1)[0])); break;                                  // BINGET
                case (byte)'j': Push(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(pickle, 4)))); break; // LONG_BINGET
                case (byte)'c':                                                                         // GLOBAL
                {
                    string module = Line(pickle), name = Line(pickle);
                    Push(CheckGlobal(module, name));
                    break;
                }
                case 0x93:                                                                              // STACK_GLOBAL
                {
                    var name = Pop() as string ?? throw Bad("STACK_GLOBAL without a name");
                    var module = Pop() as string ?? throw Bad("STACK_GLOBAL without a module");
                    Push(CheckGlobal(module, name));
                    break;
                }
                case (byte)'Q':                                                                         // BINPERSID
                {
                    var pid = Pop() as PyTuple;
                    if (pid is not { Items: ["storage", Global { Module: "torch" } g, string key, string, long numel] } || numel < 0)
                        throw Bad("a persistent id that is not torch.save's ('storage', type, key, location, size)");
                    Push(new Storage(Storages[g.Name], key, numel));
                    break;
                }
                case (byte)'R':                                                                         // REDUCE
                {
                    var args = Pop() as PyTuple ?? throw Bad("REDUCE without an argument tuple");
                    var callee = Pop() as Global ?? throw Bad("REDUCE of something that is not a class or function");
                    if (callee.Full == OrderedDict)
                    {
                        if (args.Items.Length != 0) throw Bad("collections.OrderedDict called with arguments");
                        Push(new PyDict());
                    }
                    else if (callee.Full == RebuildTensor)
                    {
                        // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
                        if (args.Items is not [Storage s, long offset, PyTuple size, PyTuple stride, bool, PyDict hooks, ..] || args.Items.Length > 7)
                            throw Bad("torch._utils._rebuild_tensor_v2 called with arguments torch.save does not write");
                        if (hooks.Items.Count != 0) throw Bad("a tensor with backward hooks");
                        Push(new TensorRef(s, offset, size.Items.Select(x => Int(x, "a tensor dimension")).ToArray(),
                            stride.Items.Select(x => Int(x, "a tensor stride")).ToArray()));
                    }
                    else throw Bad($"the pickle calls {ErrorText.Quote(callee.Full)}, which a plain state dict does not do; accepted calls: {OrderedDict}, {RebuildTensor}");
                    break;
                }
                case (byte)'b':                                                                         // BUILD
                {
                    var state = Pop();
                    // state_dict()'s OrderedDict carries {"_metadata": ...} as instance state; nothing else has state here.
                    if (Peek() is not PyDict || state is not (PyDict or null))
                        throw Bad("BUILD (object state) on something other than a state dict's OrderedDict");
                    if (state is PyDict sd && sd.Items.Any(kv => kv.Value is TensorRef))
                        throw Bad("tensors in an OrderedDict's instance state, not among its items");
                    break;
                }
                case (byte)'.':                                                                         // STOP
                {
                    var root = Pop();
                    if (stack.Count != 0) throw Bad("the pickle leaves values on its stack");
                    if (pos != pickle.Length) throw Bad($"{pickle.Length - pos} bytes after the pickle's STOP");
                    return StateDict(root);
                }
                default:
                    throw Bad($"the pickle uses opcode 0x{op:x2} at byte {pos - 1}, which a plain state dict of tensors does not need (refused without running anything)");
            }
        }

        object? Peek() => stack.Count > 0 && stack[^1] is not Mark ? stack[^1] : throw Bad($"the pickle reads an empty stack at byte {pos}");
        object? Memo(long i) => memo.TryGetValue(i, out var v) ? v : throw Bad($"the pickle reads memo {i}, which was never stored");

        List<PickledTensor> StateDict(object? root)
        {
            if (root is not PyDict dict) throw Bad("the pickle is not a dict of tensors (not a state dict)");
            var result = new List<PickledTensor>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (key, value) in dict.Items)
            {
                if (key is not string name) throw Bad("the state dict has a key that is not a string");
                if (value is not TensorRef t)
                    throw Bad($"key {ErrorText.Quote(name)} holds {Describe(value)}, not a tensor (only plain state dicts of tensors are accepted)");
                if (!seen.Add(name)) throw Bad($"key {ErrorText.Quote(name)} appears twice");
                result.Add(new PickledTensor(name, t.Storage.DType, t.Storage.Key, t.Storage.Numel, t.Offset, t.Shape, t.Stride));
            }
            return result;
        }
    }

    private static string Describe(object? v) => v switch
    {
        null => "None",
        long => "an integer",
        double => "a float",
        bool => "a boolean",
        string => "a string",
        PyBytes => "bytes",
        PyDict => "a dict",
        PyList => "a list",
        PyTuple => "a tuple",
        _ => v.GetType().Name,
    };
}
