"""Train any codecgen model with the Lightning CLI.

    python train.py fit --config configs/hificodec/tiny.yaml [--trainer.max_steps 100] [--data.root DIR]
"""

from codecgen.cli.train import train_main

if __name__ == "__main__":
    train_main()
