using System.CommandLine;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;
using SpeedLimit.Training;
using Spectre.Console;

namespace SpeedLimit.Cli.Commands;

/// <summary>`speedlimit supermodel train`: the weight-sharing supermodel on its own.</summary>
public static class TrainCommands
{
    public static IEnumerable<Command> Create()
    {
        var supermodel = new Command("supermodel", "Train the weight-sharing supermodel that the search extracts candidates from.");
        supermodel.Subcommands.Add(CreateTrain());
        yield return supermodel;
    }

    private static Command CreateTrain()
    {
        var task = new Option<string>("--task") { Description = "Task: builtin or a GLUE task name.", DefaultValueFactory = _ => "builtin" };
        var dataDir = new Option<string?>("--data-dir") { Description = "Folder with the GLUE task's TSV files." };
        var vocab = new Option<string?>("--vocab") { Description = "WordPiece vocabulary for GLUE tasks." };
        var maxLength = new Option<int>("--max-length") { Description = "Max tokens per example.", DefaultValueFactory = _ => 64 };
        var space = new Option<string?>("--space") { Description = "Search space JSON ('paper' for Table 1; default: the demo space). The supermodel is its largest architecture." };
        var epochs = new Option<int>("--epochs") { Description = "Training epochs.", DefaultValueFactory = _ => 3 };
        var batch = new Option<int>("--batch-size") { Description = "Batch size.", DefaultValueFactory = _ => 32 };
        var lr = new Option<float>("--lr") { Description = "Peak learning rate (linear warm-up 10 %, then linear decay).", DefaultValueFactory = _ => 5e-4f };
        var randomSubModels = new Option<int>("--random-submodels") { Description = "Random sub-models per step besides the largest and smallest (sandwich rule).", DefaultValueFactory = _ => 2 };
        var distill = new Option<float>("--distill-weight") { Description = "Weight of in-place distillation from the largest sub-model.", DefaultValueFactory = _ => 0.5f };
        var every = new Option<int>("--checkpoint-every") { Description = "Steps between checkpoints.", DefaultValueFactory = _ => 50 };
        var seed = new Option<int>("--seed") { Description = "Seed of initialization, batch order and sampling.", DefaultValueFactory = _ => 1 };
        var threads = new Option<int>("--threads") { Description = "Training threads.", DefaultValueFactory = _ => Environment.ProcessorCount };
        var corpus = new Option<string[]>("--pretrain-corpus") { Description = "Plain-text file(s) for masked-LM pretraining before task training.", AllowMultipleArgumentsPerToken = true };
        var pretrainEpochs = new Option<int>("--pretrain-epochs") { Description = "Masked-LM pretraining epochs.", DefaultValueFactory = _ => 1 };
        var teacher = new Option<string?>("--teacher") { Description = "Fine-tuned checkpoint to distil from (default: in-place distillation)." };
        var output = new Option<string>("--output") { Description = "Checkpoint (safetensors) to write; an existing one is resumed.", Required = true };
        var cmd = new Command("train", "Train (or resume) a supermodel with the sandwich rule and in-place distillation; checkpoints as it goes.")
        {
            task, dataDir, vocab, maxLength, space, epochs, batch, lr, randomSubModels, distill, every, seed, threads, corpus, pretrainEpochs, teacher, output,
        };
        cmd.SetAction(parse => CliErrors.Guard(() =>
        {
            var data = new DataOptions { Task = parse.GetValue(task)!, DataDir = parse.GetValue(dataDir), VocabPath = parse.GetValue(vocab), MaxSequenceLength = parse.GetValue(maxLength) };
            var training = new SupermodelTrainingOptions
            {
                Epochs = parse.GetValue(epochs), BatchSize = parse.GetValue(batch), LearningRate = parse.GetValue(lr), CheckpointEverySteps = parse.GetValue(every),
                PretrainCorpus = parse.GetValue(corpus) ?? [], PretrainEpochs = parse.GetValue(pretrainEpochs), TeacherCheckpoint = parse.GetValue(teacher),
                Sandwich = new SupermodelOptions { RandomSubModels = parse.GetValue(randomSubModels), DistillWeight = parse.GetValue(distill) },
            };
            var job = new SupermodelJob(training, SearchSpace.FromOption(parse.GetValue(space), SearchSpace.Demo), parse.GetValue(seed), parse.GetValue(threads),
                MaxPositions: new ProfilingOptions().SequenceLength);
            data.Validate();
            training.Validate();
            if (job.Threads < 1) throw new ArgumentException($"--threads {job.Threads} must be at least 1");
            var checkpoint = parse.GetValue(output)!;
            var dir = Path.GetDirectoryName(Path.GetFullPath(checkpoint))!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"folder '{dir}' for the checkpoint does not exist; create it first");
            var encoded = EncodedTask.Load(data, job.Seed);
            var notes = new List<string>();
            ConsoleProgress.Run<PipelineProgress>("supermodel", p => (p.Completed, p.Total, p.Message),
                progress => SupermodelStage.Train(job, encoded, checkpoint, progress, notes, CancellationToken.None));
            foreach (var n in notes) AnsiConsole.MarkupLineInterpolated($"[grey]note:[/] {n}");
            AnsiConsole.MarkupLineInterpolated($"supermodel {job.Space.Largest} written to [bold]{checkpoint}[/]");
            return 0;
        }));
        return cmd;
    }
}
