"""SemantiCodec (Liu, Chen, Yuan, Kang, Plumbley, Wang: "SemantiCodec: An Ultra Low Bitrate
Semantic Audio Codec for General Sound", 2024; inference code: haoheliu/SemantiCodec-inference),
with the training its authors never released, stage by stage:

1. ``mae.AudioMAEPretraining``: the semantic encoder, an AudioMAE pre-trained on our audio;
2. ``tokenizer.SemanticTokenizer``: its frozen features grouped for the token rate and
   k-means-clustered (``python infer.py fit-kmeans``);
3. ``mel_vae.MelVAE``: the variational autoencoder of the 64-bin mel the decoder diffuses in;
4. ``vocoder.MelVocoder``: the HiFi-GAN vocoder from that mel to 16 kHz audio;
5. ``codec.SemantiCodec``: the acoustic encoder and its VQ (``acoustic``) trained jointly with
   the latent diffusion decoder on the frozen stages 2-4.
"""
