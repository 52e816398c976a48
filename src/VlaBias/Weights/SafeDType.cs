using TorchSharp;

namespace VlaBias.Weights;

/// <summary>The safetensors element types VlaBias reads and writes; the names are the format's dtype strings.</summary>
public enum SafeDType { F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F64 }

/// <summary>Mapping between safetensors dtype strings, element sizes and TorchSharp scalar types.</summary>
public static class SafeDTypes
{
    /// <summary>Dtype strings the format defines that have no TorchSharp type here; named in errors as "not supported".</summary>
    private static readonly HashSet<string> KnownButUnsupported = new(StringComparer.Ordinal)
    {
        "F4", "F6_E2M3", "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "U16", "U32", "U64", "C64",
    };

    public static long ElementSize(this SafeDType dtype) => dtype switch
    {
        SafeDType.BOOL or SafeDType.U8 or SafeDType.I8 => 1,
        SafeDType.F16 or SafeDType.BF16 or SafeDType.I16 => 2,
        SafeDType.F32 or SafeDType.I32 => 4,
        SafeDType.F64 or SafeDType.I64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    public static torch.ScalarType ToScalarType(this SafeDType dtype) => dtype switch
    {
        SafeDType.F32 => torch.ScalarType.Float32,
        SafeDType.F16 => torch.ScalarType.Float16,
        SafeDType.BF16 => torch.ScalarType.BFloat16,
        SafeDType.I64 => torch.ScalarType.Int64,
        SafeDType.I32 => torch.ScalarType.Int32,
        SafeDType.I16 => torch.ScalarType.Int16,
        SafeDType.I8 => torch.ScalarType.Int8,
        SafeDType.U8 => torch.ScalarType.Byte,
        SafeDType.BOOL => torch.ScalarType.Bool,
        SafeDType.F64 => torch.ScalarType.Float64,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>The safetensors dtype of a TorchSharp scalar type, or null when the format (as VlaBias supports it) has none.</summary>
    public static SafeDType? FromScalarType(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Float32 => SafeDType.F32,
        torch.ScalarType.Float16 => SafeDType.F16,
        torch.ScalarType.BFloat16 => SafeDType.BF16,
        torch.ScalarType.Int64 => SafeDType.I64,
        torch.ScalarType.Int32 => SafeDType.I32,
        torch.ScalarType.Int16 => SafeDType.I16,
        torch.ScalarType.Int8 => SafeDType.I8,
        torch.ScalarType.Byte => SafeDType.U8,
        torch.ScalarType.Bool => SafeDType.BOOL,
        torch.ScalarType.Float64 => SafeDType.F64,
        _ => null,
    };

    /// <summary>Parses a header dtype string; the error text says whether the name is unknown or merely unsupported.</summary>
    internal static bool TryParse(string text, out SafeDType dtype, out string error)
    {
        if (Enum.TryParse(text, ignoreCase: false, out dtype) && Enum.IsDefined(dtype) && dtype.ToString() == text)
        {
            error = "";
            return true;
        }
        error = KnownButUnsupported.Contains(text)
            ? $"dtype {ErrorText.Quote(text)} is not supported (supported: {string.Join(", ", Enum.GetNames<SafeDType>())})"
            : $"unknown dtype {ErrorText.Quote(text)}";
        return false;
    }

    /// <summary>
    /// Position of the dtype in the reference implementation's Dtype enum, which is declared in increasing alignment
    /// order; its writer lays tensors out by this rank descending, then by name.
    /// </summary>
    internal static int AlignmentRank(this SafeDType dtype) => dtype switch
    {
        SafeDType.BOOL => 0,
        SafeDType.U8 => 4,
        SafeDType.I8 => 5,
        SafeDType.I16 => 11,
        SafeDType.F16 => 13,
        SafeDType.BF16 => 14,
        SafeDType.I32 => 15,
        SafeDType.F32 => 17,
        SafeDType.F64 => 19,
        SafeDType.I64 => 20,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };
}
