"""The risk service's pure domain: the register (5×5 assessment), signal rules, emergency plans and on-call rotas."""
