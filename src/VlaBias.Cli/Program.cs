using static TorchSharp.torch;
var t = ones(3, 3);
Console.WriteLine((t.matmul(t)).sum().item<float>());
