using System.CommandLine;
using SpeedLimit.Checkpoints;
using SpeedLimit.Pipeline;
using SpeedLimit.Pretrained;
using Spectre.Console;

namespace SpeedLimit.Cli.Commands;

/// <summary>
/// Pretrained models: <c>finetune</c> (a pretrained encoder fine-tuned into the task's teacher) and
/// <c>pretrained import|export</c> (Hugging Face folders and ONNX exports in and out of our checkpoints).
/// </summary>
public static class PretrainedCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return FineTune();
        var pretrained = new Command("pretrained", "Import a pretrained BERT (Hugging Face folder, ONNX export, or minilm-l6) or write one of our checkpoints as a Hugging Face folder.");
        pretrained.Subcommands.Add(Import());
        pretrained.Subcommands.Add(Export());
        yield return pretrained;
    }

    private static Option<string> PretrainedOption() => new("--pretrained")
    {
        Description = $"a Hugging Face folder (config.json, model.safetensors, vocab.txt), an ONNX export of a Hugging Face BERT (.onnx, or a folder with model.onnx and vocab.txt), or a built-in name ({string.Join(", ", PretrainedLoader.BuiltinNames)}: all-MiniLM-L6-v2, no download)",
        Required = true,
    };

    private static Command FineTune()
    {
        var pretrained = PretrainedOption();
        var task = new Option<string>("--task") { Description = "GLUE task name (sst2, cola, mrpc, rte, stsb, qnli, …)", Required = true };
        var dataDir = new Option<string?>("--data-dir") { Description = "folder with the task's train/dev TSV files" };
        var vocab = new Option<string?>("--vocab") { Description = "vocab.txt of an ONNX model that has none beside it (tokenization always uses the model's own vocabulary)" };
        var maxLength = new Option<int>("--max-length") { Description = "max tokens per example", DefaultValueFactory = _ => 128 };
        var maxTrain = new Option<int?>("--max-train-examples") { Description = "train on a seeded random subset of at most this many examples" };
        var maxDev = new Option<int?>("--max-dev-examples") { Description = "evaluate on a seeded random subset of at most this many dev examples" };
        var d = new TeacherFineTuneOptions();
        var epochs = new Option<int>("--epochs") { Description = "epochs", DefaultValueFactory = _ => d.Epochs };
        var batch = new Option<int>("--batch-size") { Description = "batch size", DefaultValueFactory = _ => d.BatchSize };
        var lr = new Option<float>("--lr") { Description = "peak learning rate of AdamW (linear warm-up, then linear decay to 0)", DefaultValueFactory = _ => d.LearningRate };
        var warmup = new Option<float>("--warmup-ratio") { Description = "fraction of the steps spent warming up", DefaultValueFactory = _ => d.WarmupRatio };
        var dropout = new Option<float>("--dropout") { Description = "dropout rate while training", DefaultValueFactory = _ => d.Dropout };
        var maxSteps = new Option<long?>("--max-steps") { Description = "stop after this many optimizer steps (the schedule is sized to them)" };
        var every = new Option<int>("--checkpoint-every") { Description = "steps between training checkpoints (a rerun with the same settings resumes from the last)", DefaultValueFactory = _ => d.CheckpointEverySteps };
        var seed = new Option<int>("--seed") { Description = "seed of the new head's initialization, batch order, dropout and subsets", DefaultValueFactory = _ => d.Seed };
        var threads = new Option<int>("--threads") { Description = "training threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var output = new Option<string>("--output", "-o") { Description = "folder for the teacher: teacher.safetensors, teacher.fp32.onnx, teacher.int8.onnx, teacher-hf/, vocab.txt, finetune.json", Required = true };
        var command = new Command("finetune", "Fine-tune a pretrained BERT on a task (Hugging Face's recipe: AdamW, lr 5e-5, warm-up 10 %, 3 epochs, batch 32) into the teacher, with its fp32 and int8 ONNX.")
        {
            pretrained, task, dataDir, vocab, maxLength, maxTrain, maxDev, epochs, batch, lr, warmup, dropout, maxSteps, every, seed, threads, output,
        };
        command.SetAction(parse => CliErrors.Guard(() =>
        {
            var options = new TeacherFineTuneOptions
            {
                Epochs = parse.GetValue(epochs), BatchSize = parse.GetValue(batch), LearningRate = parse.GetValue(lr), WarmupRatio = parse.GetValue(warmup),
                Dropout = parse.GetValue(dropout), MaxSteps = parse.GetValue(maxSteps), CheckpointEverySteps = parse.GetValue(every),
                Seed = parse.GetValue(seed), Threads = parse.GetValue(threads),
            };
            options.Validate();
            var data = new DataOptions
            {
                Task = parse.GetValue(task)!, DataDir = parse.GetValue(dataDir), MaxSequenceLength = parse.GetValue(maxLength),
                MaxTrainExamples = parse.GetValue(maxTrain), MaxDevExamples = parse.GetValue(maxDev),
            };
            data.Validate();
            var outputDir = parse.GetValue(output)!;
            if (File.Exists(outputDir)) throw new UserInputException($"--output '{outputDir}' is a file; give a folder");
            var encoder = PretrainedLoader.Load(parse.GetValue(pretrained)!, parse.GetValue(vocab));
            AnsiConsole.MarkupLineInterpolated($"pretrained [bold]{encoder.Source}[/]: {encoder.Arch}, {encoder.Config.Heads} heads, vocabulary {encoder.Config.VocabSize}");
            var encoded = TeacherFineTuning.LoadTask(encoder, data, options.Seed, outputDir);
            AnsiConsole.MarkupLineInterpolated($"task [bold]{encoded.Task.Name}[/]: {encoded.Train.Count} train / {encoded.Dev.Count} dev examples, max length {encoded.MaxLength}");
            TeacherResult? result = null;
            ConsoleProgress.Run<FineTuneProgress>("fine-tuning", p => (p.Step, p.TotalSteps, p.Message),
                progress => result = TeacherFineTuning.Run(encoder, encoded, options, outputDir, progress));
            foreach (var n in result!.Notes) AnsiConsole.MarkupLineInterpolated($"[grey]note:[/] {n}");
            AnsiConsole.MarkupLineInterpolated($"teacher {result.Model.Config.Arch}: dev {result.MetricName} [bold]{result.DevMetric:F4}[/] (int8-simulated {result.DevMetricInt8:F4}) after {result.Steps} steps, {result.TrainSeconds:F0} s of training");
            AnsiConsole.MarkupLineInterpolated($"ONNX Runtime on dev: fp32 {result.OnnxDevMetricFp32:F4}, int8 {result.OnnxDevMetricInt8:F4}");
            AnsiConsole.MarkupLineInterpolated($"wrote [green]{result.CheckpointFile}[/], {Path.GetFileName(result.Fp32OnnxFile)}, {Path.GetFileName(result.Int8OnnxFile)}, {Path.GetFileName(result.HuggingFaceFolder)}/, {Path.GetFileName(result.SummaryFile)}");
            return 0;
        }));
        return command;
    }

    private static Command Import()
    {
        var pretrained = PretrainedOption();
        var vocab = new Option<string?>("--vocab") { Description = "vocab.txt of an ONNX model that has none beside it" };
        var output = new Option<string>("--output", "-o") { Description = "folder to write the model to as a Hugging Face folder (config.json, model.safetensors, vocab.txt)", Required = true };
        var dtype = DTypeOption();
        var command = new Command("import", "Read a pretrained BERT, check it, print its shape, and write it as a Hugging Face folder (e.g. minilm-l6 or an ONNX export → safetensors).")
        {
            pretrained, vocab, output, dtype,
        };
        command.SetAction(parse => CliErrors.Guard(() =>
        {
            var storage = ParseDType(parse.GetValue(dtype)!);
            var encoder = PretrainedLoader.Load(parse.GetValue(pretrained)!, parse.GetValue(vocab));
            var model = encoder.CreateModel();
            var dir = parse.GetValue(output)!;
            HuggingFaceFolder.Write(dir, model, encoder.Vocab, encoder.LowerCase, storage);
            AnsiConsole.MarkupLineInterpolated($"{encoder.Source}: {encoder.Arch}, {encoder.Config.Heads} heads, vocabulary {encoder.Config.VocabSize}, {encoder.Config.MaxPositions} positions, head {encoder.Config.Head}{(encoder.HasPooler ? ", pooler" : "")}");
            foreach (var n in encoder.Notes) AnsiConsole.MarkupLineInterpolated($"[grey]note:[/] {n}");
            AnsiConsole.MarkupLineInterpolated($"wrote [green]{dir}[/]");
            return 0;
        }));
        return command;
    }

    private static Command Export()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "a SpeedLimit checkpoint (.safetensors), e.g. a winner or the teacher", Required = true };
        var vocab = new Option<string>("--vocab") { Description = "the vocab.txt the model was trained with", Required = true };
        var cased = new Option<bool>("--cased") { Description = "the tokenizer keeps case (default: uncased, as bert-base-uncased)" };
        var output = new Option<string>("--output", "-o") { Description = "folder to write (config.json, model.safetensors, vocab.txt, tokenizer_config.json)", Required = true };
        var dtype = DTypeOption();
        var command = new Command("export", "Write a SpeedLimit checkpoint as a Hugging Face folder that transformers loads (BertForSequenceClassification / BertForMaskedLM).")
        {
            checkpoint, vocab, cased, output, dtype,
        };
        command.SetAction(parse => CliErrors.Guard(() =>
        {
            var storage = ParseDType(parse.GetValue(dtype)!);
            var data = BertCheckpoint.Load(parse.GetValue(checkpoint)!);
            var vocabPath = parse.GetValue(vocab)!;
            if (!File.Exists(vocabPath)) throw new FileNotFoundException($"vocabulary '{vocabPath}' does not exist", vocabPath);
            var lines = HuggingFaceFolder.ReadVocabLines(vocabPath);
            if (lines.Length != data.Config.VocabSize)
                throw new UserInputException($"'{vocabPath}' has {lines.Length} tokens but the checkpoint embeds {data.Config.VocabSize}; give the vocab.txt the model was trained with");
            var dir = parse.GetValue(output)!;
            HuggingFaceFolder.Write(dir, data.Config, data.Parameters, lines, !parse.GetValue(cased), storage);
            AnsiConsole.MarkupLineInterpolated($"wrote [green]{dir}[/]: {data.Config.Arch}, {data.Config.Head}, {parse.GetValue(dtype)}");
            return 0;
        }));
        return command;
    }

    private static Option<string> DTypeOption() => new("--dtype") { Description = "weights on disk: f32 (exact), f16 or bf16 (half the size)", DefaultValueFactory = _ => "f32" };

    private static string ParseDType(string text) => text.ToLowerInvariant() switch
    {
        "f32" or "fp32" or "float32" => SafeTensors.F32,
        "f16" or "fp16" or "float16" => SafeTensors.F16,
        "bf16" or "bfloat16" => SafeTensors.BF16,
        _ => throw new UserInputException($"--dtype '{text}' is not one of f32, f16, bf16"),
    };
}
