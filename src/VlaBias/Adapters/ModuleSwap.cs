// Replacing a registered child module in place. TorchSharp keeps children in an ordered dictionary and a field;
// both must change, and re-registering only the replaced child would move it (and its state_dict keys) to the end,
// so the children from it onward are re-registered in their original order.
using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;

namespace VlaBias.Adapters;

internal static class ModuleSwap
{
    public static void Replace(nn.Module parent, string name, nn.Module replacement)
    {
        var field = FindField(parent.GetType(), name)
                    ?? throw new InvalidOperationException($"{parent.GetType().Name} has no field '{name}' to hold the replacement module");
        if (!field.FieldType.IsInstanceOfType(replacement))
            throw new InvalidOperationException(
                $"{parent.GetType().Name}.{name} is declared as {field.FieldType.Name}, which cannot hold a {replacement.GetType().Name}; declare it as nn.Module<Tensor, Tensor>");

        var children = parent.named_children().ToList();
        int index = children.FindIndex(c => c.name == name);
        if (index < 0) throw new InvalidOperationException($"{parent.GetType().Name} has no registered child '{name}'");
        for (int i = index; i < children.Count; i++) parent.register_module(children[i].name, null!);
        field.SetValue(parent, replacement);
        for (int i = index; i < children.Count; i++)
            parent.register_module(children[i].name, i == index ? replacement : children[i].module);
    }

    private static FieldInfo? FindField(Type? type, string name)
    {
        for (; type is not null; type = type.BaseType)
        {
            var f = type.GetField(name, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly);
            if (f is not null) return f;
        }
        return null;
    }
}
