[
  inputs: ["{mix,.formatter}.exs", "{config,lib,test,bench}/**/*.{ex,exs}"],
  # `defnif name(args)` declares a NIF stub (Switchboard.NIF.Library).
  locals_without_parens: [defnif: 1]
]
