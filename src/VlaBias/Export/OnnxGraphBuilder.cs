// A small writer of ONNX graphs (TorchSharp has no exporter): named inputs and outputs with symbolic dimensions,
// nodes with attributes, and initializers taken from TorchSharp tensors. Initializers keep a reference to the
// tensor and are converted to float32 bytes only when the model is saved, one tensor at a time, so a large model is
// never held twice in memory. Saving writes raw_data inside the .onnx file, or, when the weights exceed a threshold
// (protobuf cannot hold more than 2 GB), every large tensor into one external "<file>_data" file (decoder_model_merged.onnx
// → decoder_model_merged.onnx_data, the name Transformers.js fetches).
using Google.Protobuf;
using Onnx;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Export;

internal sealed class OnnxGraphBuilder
{
    public const int Opset = 17;          // ai.onnx opset: LayerNormalization exists, ReduceMean still takes axes as an attribute
    public const long IrVersion = 8;      // the IR version that goes with opset 17 (ONNX 1.12), accepted by ORT 1.31 and onnx 1.12's checker
    public const long DefaultExternalThreshold = 2_000_000_000;
    private const long ExternalMinBytes = 1024; // tensors smaller than this stay inline even in external-data mode

    private readonly GraphProto graph;
    private readonly List<(string name, Tensor tensor, bool transpose)> weights = [];
    private readonly HashSet<string> names = [];
    private int counter;

    public OnnxGraphBuilder(string graphName) => graph = new GraphProto { Name = graphName };

    public enum Elem { Float = 1, Int64 = 7, Bool = 9 }

    /// <summary>A graph input; each dimension is a number or a symbolic name ("batch_size", "past_sequence_length").</summary>
    public string Input(string name, Elem type, params object[] dims)
    {
        graph.Input.Add(ValueInfo(name, type, dims));
        names.Add(name);
        return name;
    }

    /// <summary>Renames <paramref name="value"/> (a node output) to the graph output <paramref name="name"/>.</summary>
    public void Output(string value, string name, Elem type, params object[] dims)
    {
        Node("Identity", [value], name);
        graph.Output.Add(ValueInfo(name, type, dims));
    }

    /// <summary>Declares an existing node output as a graph output (no Identity node).</summary>
    public void DeclareOutput(string name, Elem type, params object[] dims) => graph.Output.Add(ValueInfo(name, type, dims));

    /// <summary>A float32 initializer holding <paramref name="t"/> (or its transpose, for MatMul with x·Wᵀ).</summary>
    public string Weight(string name, Tensor t, bool transpose = false)
    {
        if (!names.Add(name)) throw new InvalidOperationException($"ONNX value '{name}' defined twice");
        weights.Add((name, t, transpose));
        return name;
    }

    public string Ints(params long[] values) => Constant(TensorProto.Types.DataType.Int64, values.SelectMany(BitConverter.GetBytes).ToArray(), [values.Length]);
    public string Scalar(long value) => Constant(TensorProto.Types.DataType.Int64, BitConverter.GetBytes(value), []);
    public string Scalar(float value) => Constant(TensorProto.Types.DataType.Float, BitConverter.GetBytes(value), []);
    public string Floats(float[] values) => Constant(TensorProto.Types.DataType.Float, values.SelectMany(BitConverter.GetBytes).ToArray(), [values.Length]);

    private string Constant(TensorProto.Types.DataType type, byte[] bytes, long[] dims)
    {
        string name = $"const_{counter++}";
        var t = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(bytes) };
        t.Dims.AddRange(dims);
        graph.Initializer.Add(t);
        names.Add(name);
        return name;
    }

    /// <summary>Adds a node with one output (a fresh name unless given) and returns that output's name.</summary>
    public string Node(string op, string[] inputs, string? output = null, params (string name, object value)[] attributes) =>
        Nodes(op, inputs, 1, output is null ? null : [output], attributes)[0];

    public string[] Nodes(string op, string[] inputs, int outputs, string[]? outputNames = null, params (string name, object value)[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = $"{op}_{counter++}" };
        node.Input.AddRange(inputs);
        var outs = outputNames ?? Enumerable.Range(0, outputs).Select(i => $"{node.Name}_out{i}").ToArray();
        foreach (var o in outs)
            if (!names.Add(o)) throw new InvalidOperationException($"ONNX value '{o}' defined twice");
        node.Output.AddRange(outs);
        foreach (var (n, v) in attributes) node.Attribute.Add(Attribute(n, v));
        graph.Node.Add(node);
        return outs;
    }

    private static AttributeProto Attribute(string name, object value)
    {
        var a = new AttributeProto { Name = name };
        switch (value)
        {
            case int i: a.Type = AttributeProto.Types.AttributeType.Int; a.I = i; break;
            case long l: a.Type = AttributeProto.Types.AttributeType.Int; a.I = l; break;
            case float f: a.Type = AttributeProto.Types.AttributeType.Float; a.F = f; break;
            case double d: a.Type = AttributeProto.Types.AttributeType.Float; a.F = (float)d; break;
            case string s: a.Type = AttributeProto.Types.AttributeType.String; a.S = ByteString.CopyFromUtf8(s); break;
            case long[] ls: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ls); break;
            case int[] iss: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(iss.Select(x => (long)x)); break;
            default: throw new ArgumentException($"attribute {name}: unsupported value type {value.GetType()}");
        }
        return a;
    }

    private static ValueInfoProto ValueInfo(string name, Elem type, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d switch
            {
                string s => new TensorShapeProto.Types.Dimension { DimParam = s },
                int i => new TensorShapeProto.Types.Dimension { DimValue = i },
                long l => new TensorShapeProto.Types.Dimension { DimValue = l },
                _ => throw new ArgumentException($"dimension {d} of {name}"),
            });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
    }

    /// <summary>Bytes of all float initializers, as saved.</summary>
    public long WeightBytes => weights.Sum(w => w.tensor.numel() * 4);

    /// <summary>
    /// Writes the model to <paramref name="path"/>. If the weights exceed <paramref name="externalThreshold"/> bytes,
    /// tensors of at least 1 KB go to "&lt;file name&gt;_data" beside it (ONNX external data, one file, 64-byte aligned offsets).
    /// Returns the path of the external data file, or null.
    /// </summary>
    public string? Save(string path, string producer, long externalThreshold = DefaultExternalThreshold)
    {
        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "vlatune",
            ProducerVersion = producer,
            Graph = graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        bool external = WeightBytes > externalThreshold;
        string dataName = Path.GetFileName(path) + "_data";
        string dataPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, dataName);
        string tmpData = dataPath + ".tmp";
        FileStream? data = external ? new FileStream(tmpData, FileMode.Create, FileAccess.Write) : null;
        var added = new List<TensorProto>();
        try
        {
            foreach (var (name, t, transpose) in weights)
            {
                using var scope = NewDisposeScope();
                var v = (transpose ? t.detach().t() : t.detach()).to_type(ScalarType.Float32).cpu().contiguous();
                var proto = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
                proto.Dims.AddRange(v.shape);
                long bytes = v.numel() * 4;
                if (data is not null && bytes >= ExternalMinBytes)
                {
                    long pad = (64 - data.Position % 64) % 64;
                    if (pad > 0) data.Write(new byte[pad]);
                    long offset = data.Position;
                    TensorMemory.ForEachChunk(v, TensorMemory.DefaultChunkBytes, (chunk, _) => data.Write(chunk));
                    proto.DataLocation = TensorProto.Types.DataLocation.External;
                    proto.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = dataName });
                    proto.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString() });
                    proto.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = bytes.ToString() });
                }
                else
                {
                    var buffer = new byte[bytes];
                    TensorMemory.ForEachChunk(v, TensorMemory.DefaultChunkBytes, (chunk, at) => chunk.CopyTo(buffer.AsSpan((int)at)));
                    proto.RawData = ByteString.CopyFrom(buffer);
                }
                added.Add(proto);
            }
            data?.Dispose();
            data = null;
            graph.Initializer.AddRange(added);
            var tmp = path + ".tmp";
            using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write)) model.WriteTo(f);
            if (external) File.Move(tmpData, dataPath, overwrite: true);
            else if (File.Exists(dataPath)) File.Delete(dataPath);
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            data?.Dispose();
            if (File.Exists(tmpData)) File.Delete(tmpData);
            foreach (var p in added) graph.Initializer.Remove(p);
        }
        return external ? dataPath : null;
    }
}
