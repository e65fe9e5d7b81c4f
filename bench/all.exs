# Runs every benchmark in bench/ (make bench; make demo runs it in quick mode).
for file <- Path.wildcard(Path.join(__DIR__, "*.exs")) |> Enum.sort(),
    Path.basename(file) != "all.exs" do
  IO.puts("\n## " <> Path.basename(file))
  Code.eval_file(file)
end
