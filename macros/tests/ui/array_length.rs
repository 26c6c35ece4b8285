use optarch_core::__private::tch::{nn, Tensor};

#[derive(Debug)]
struct Block(nn::Linear);

impl nn::ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.0)
    }
}

#[derive(Debug, optarch_macros::Unroll)]
#[optarch(yaml = "name: gd\nstate: [z]\nstep:\n  z[k+1]: z[k] - grad(z[k])\noutput: z\n", steps = 3)]
struct Net {
    blocks: [Block; 2],
}

fn main() {}
